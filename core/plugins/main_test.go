//go:build integration

package plugins

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/hashicorp/go-hclog"
	"go.uber.org/goleak"

	"github.com/custos-ha/custos/plugin/sdk"
)

// testPluginBinary is internal/testplugin built once by TestMain.
var testPluginBinary string

func TestMain(m *testing.M) { os.Exit(runTests(m)) }

func runTests(m *testing.M) int {
	dir, err := os.MkdirTemp("", "custos-testplugin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() { _ = os.RemoveAll(dir) }()
	testPluginBinary = filepath.Join(dir, "testplugin")
	build := exec.Command("go", "build", "-o", testPluginBinary, "./internal/testplugin")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintf(os.Stderr, "building the test plugin (go build ./internal/testplugin): %v\n", err)
		return 1
	}
	code := m.Run()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
			return 1
		}
	}
	return code
}

// knobs mirror the test plugin's knob file (see internal/testplugin).
type knobs struct {
	Name           string `json:"name,omitempty"`
	Protocol       int    `json:"protocol,omitempty"`
	CrashAtStart   bool   `json:"crash_at_start,omitempty"`
	HangWhile      string `json:"hang_while,omitempty"`
	FloodLines     int    `json:"flood_lines,omitempty"`
	BigMemberBytes int    `json:"big_member_bytes,omitempty"`
	CallbackEvents string `json:"callback_events,omitempty"`
}

// installPlugin copies the test plugin into dir as custos-plugin-<name>,
// mode 0755, with its knob file when k is not nil.
func installPlugin(t *testing.T, dir, name string, k *knobs) Binary {
	t.Helper()
	path := filepath.Join(dir, sdk.BinaryPrefix+name)
	src, err := os.Open(testPluginBinary)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = src.Close() }()
	dst, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
	// The umask may have cleared bits; the host wants exactly 0755 or less.
	if err := os.Chmod(path, 0o755); err != nil {
		t.Fatal(err)
	}
	if k != nil {
		setKnobs(t, path, *k)
	}
	return Binary{Name: name, Path: path}
}

// setKnobs writes the knob file read by the next start of the plugin.
func setKnobs(t *testing.T, pluginPath string, k knobs) {
	t.Helper()
	data, err := json.Marshal(k)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pluginPath+".json", data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// logBuffer collects the host logger's JSON lines; go-plugin writes to it
// from its own goroutines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// entries parses every JSON log line written so far.
func (b *logBuffer) entries(t *testing.T) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(b.String()))
	sc.Buffer(make([]byte, 0, 1<<20), 1<<20)
	for sc.Scan() {
		var e map[string]any
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("host log line is not JSON: %q: %v", sc.Text(), err)
		}
		out = append(out, e)
	}
	return out
}

// withMessage returns the entries with the message and, for each key/value
// pair in kv, that value (compared as text).
func (b *logBuffer) withMessage(t *testing.T, msg string, kv ...string) []map[string]any {
	t.Helper()
	var out []map[string]any
next:
	for _, e := range b.entries(t) {
		if e["@message"] != msg {
			continue
		}
		for i := 0; i+1 < len(kv); i += 2 {
			if fmt.Sprint(e[kv[i]]) != kv[i+1] {
				continue next
			}
		}
		out = append(out, e)
	}
	return out
}

// testHost is a Host on a fresh plugin directory, logging JSON into logs.
type testHost struct {
	*Host
	dir  string
	logs *logBuffer
}

func newTestHost(t *testing.T, checksums map[string]string) *testHost {
	t.Helper()
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	logs := &logBuffer{}
	logger := hclog.New(&hclog.LoggerOptions{Name: "custos", Level: hclog.Debug, Output: logs, JSONFormat: true})
	h, err := NewHost(Options{Logger: logger, Dir: dir, Checksums: checksums})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		h.Shutdown()
		if t.Failed() {
			t.Logf("host log:\n%s", logs.String())
		}
	})
	return &testHost{Host: h, dir: dir, logs: logs}
}

// processGone reports whether no process has the pid any more.
func processGone(pid int) bool {
	return syscall.Kill(pid, 0) == syscall.ESRCH
}
