//go:build integration

package plugins

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/custos-ha/custos/plugin/sdk"
	"github.com/custos-ha/custos/plugin/sdk/dcs"
	"github.com/custos-ha/custos/testkit/poll"
)

func TestDiscoverListsPluginExecutables(t *testing.T) {
	dir := t.TempDir()
	installPlugin(t, dir, "dcs-memory", &knobs{}) // its knob file is not executable
	installPlugin(t, dir, "replica-x", nil)
	if err := os.Mkdir(filepath.Join(dir, sdk.BinaryPrefix+"subdir"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, sdk.BinaryPrefix+"data"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "other-tool"), []byte("x"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(dir, sdk.BinaryPrefix+"dcs-memory"), filepath.Join(dir, sdk.BinaryPrefix+"dcs-link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(dir, "missing"), filepath.Join(dir, sdk.BinaryPrefix+"dangling")); err != nil {
		t.Fatal(err)
	}

	bins, err := Discover(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, b := range bins {
		names = append(names, b.Name)
		if b.Path != filepath.Join(dir, sdk.BinaryPrefix+b.Name) {
			t.Errorf("binary %s has path %s", b.Name, b.Path)
		}
	}
	if want := []string{"dcs-link", "dcs-memory", "replica-x"}; !slices.Equal(names, want) {
		t.Errorf("discovered %v, want %v", names, want)
	}
}

func TestDiscoverRefusesWritableByOthers(t *testing.T) {
	for _, tc := range []struct {
		name     string
		dirMode  os.FileMode
		binMode  os.FileMode
		badPath  func(dir string) string
		wantMode string
	}{
		{"world-writable dir", 0o777, 0o755, func(dir string) string { return dir }, "drwxrwxrwx"},
		{"group-writable dir", 0o775, 0o755, func(dir string) string { return dir }, "drwxrwxr-x"},
		{"group-writable binary", 0o755, 0o775, func(dir string) string { return filepath.Join(dir, sdk.BinaryPrefix+"dcs-memory") }, "-rwxrwxr-x"},
		{"world-writable binary", 0o755, 0o757, func(dir string) string { return filepath.Join(dir, sdk.BinaryPrefix+"dcs-memory") }, "-rwxr-xrwx"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			bin := installPlugin(t, dir, "dcs-memory", nil)
			if err := os.Chmod(bin.Path, tc.binMode); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(dir, tc.dirMode); err != nil {
				t.Fatal(err)
			}
			_, err := Discover(dir)
			var perr *PermissionError
			if !errors.As(err, &perr) {
				t.Fatalf("want a *PermissionError, got %v", err)
			}
			msg := err.Error()
			for _, want := range []string{tc.badPath(dir), tc.wantMode, "chmod go-w " + tc.badPath(dir)} {
				if !strings.Contains(msg, want) {
					t.Errorf("error %q does not mention %q", msg, want)
				}
			}

			// Launch checks again: the directory or file may change after
			// discovery.
			h, err := NewHost(Options{Dir: dir})
			if err != nil {
				t.Fatal(err)
			}
			defer h.Shutdown()
			if _, err := h.Launch(context.Background(), bin); !errors.As(err, &perr) {
				t.Errorf("Launch: want a *PermissionError, got %v", err)
			}
		})
	}
}

func TestDiscoverRefusesASymlinkIntoAWritableDirectory(t *testing.T) {
	dir := t.TempDir()
	elsewhere := t.TempDir()
	target := installPlugin(t, elsewhere, "dcs-memory", nil)
	if err := os.Chmod(elsewhere, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target.Path, filepath.Join(dir, sdk.BinaryPrefix+"dcs-memory")); err != nil {
		t.Fatal(err)
	}
	_, err := Discover(dir)
	var perr *PermissionError
	if !errors.As(err, &perr) || perr.Path != elsewhere {
		t.Fatalf("want a *PermissionError for %s, got %v", elsewhere, err)
	}
}

func sha256File(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%x", sha256.Sum256(data))
}

func TestChecksumMatchIsAccepted(t *testing.T) {
	dir := t.TempDir()
	bin := installPlugin(t, dir, "dcs-memory", nil)
	sum := sha256File(t, bin.Path)
	for name, given := range map[string]string{"plain": sum, "prefixed upper case": "sha256:" + strings.ToUpper(sum)} {
		t.Run(name, func(t *testing.T) {
			h, err := NewHost(Options{Dir: dir, Checksums: map[string]string{"dcs-memory": given}})
			if err != nil {
				t.Fatal(err)
			}
			defer h.Shutdown()
			p, err := h.Launch(context.Background(), bin)
			if err != nil {
				t.Fatalf("launch with the right sha256: %v", err)
			}
			if p.Identity.Name != "memory" {
				t.Errorf("identity name %q", p.Identity.Name)
			}
		})
	}
}

func TestChecksumMismatchIsRefused(t *testing.T) {
	th := newTestHost(t, map[string]string{"dcs-memory": strings.Repeat("ab", 32)})
	bin := installPlugin(t, th.dir, "dcs-memory", nil)
	actual := sha256File(t, bin.Path)

	_, err := th.Launch(context.Background(), bin)
	var cerr *ChecksumError
	if !errors.As(err, &cerr) {
		t.Fatalf("want a *ChecksumError, got %v", err)
	}
	msg := err.Error()
	for _, want := range []string{"dcs-memory", bin.Path, strings.Repeat("ab", 32), actual} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not mention %q", msg, want)
		}
	}
	// The binary was never run.
	if got := th.logs.withMessage(t, "test plugin starting"); len(got) != 0 {
		t.Errorf("the plugin ran despite the checksum mismatch: %v", got)
	}
	if _, err := th.FindDCS(context.Background(), "memory"); !errors.As(err, &cerr) {
		t.Errorf("FindDCS: want a *ChecksumError, got %v", err)
	}
}

func TestMalformedChecksumIsAConfigError(t *testing.T) {
	_, err := NewHost(Options{Dir: t.TempDir(), Checksums: map[string]string{"dcs-etcd3": "abc"}})
	if err == nil || !strings.Contains(err.Error(), "plugins.dcs-etcd3.sha256") {
		t.Errorf("want an error naming plugins.dcs-etcd3.sha256, got %v", err)
	}
}

func TestLaunchReadsIdentity(t *testing.T) {
	th := newTestHost(t, nil)
	bin := installPlugin(t, th.dir, "dcs-memory", nil)
	p, err := th.Launch(context.Background(), bin)
	if err != nil {
		t.Fatal(err)
	}
	id := p.Identity
	if id.Name != "memory" || !slices.Equal(id.Kinds, []string{sdk.KindDCS}) || id.Version != "0.0.1-test" || id.Capabilities[dcs.CapMinTTL] != "1" {
		t.Errorf("identity %+v", id)
	}
	if p.ProtocolVersion != sdk.ProtocolVersion {
		t.Errorf("negotiated protocol %d, want %d", p.ProtocolVersion, sdk.ProtocolVersion)
	}
	pid := p.Pid()
	if pid <= 0 || processGone(pid) {
		t.Fatalf("plugin pid %d is not running", pid)
	}
	b, err := p.DCS()
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Configure(context.Background(), dcs.ConfigureRequest{Scope: "s", Member: "m", TTL: time.Second}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.GetCluster(context.Background()); err != nil {
		t.Fatal(err)
	}
	p.Kill()
	if !p.Exited() || !processGone(pid) {
		t.Errorf("plugin process %d still there after Kill", pid)
	}
}

func TestProtocolMismatch(t *testing.T) {
	th := newTestHost(t, nil)
	bin := installPlugin(t, th.dir, "dcs-memory", &knobs{Protocol: 2})
	_, err := th.Launch(context.Background(), bin)
	var perr *ProtocolError
	if !errors.As(err, &perr) {
		t.Fatalf("want a *ProtocolError, got %v", err)
	}
	if perr.PluginVersion != 2 || !slices.Equal(perr.HostVersions, []int{sdk.ProtocolVersion}) {
		t.Errorf("protocol error %+v", perr)
	}
	msg := err.Error()
	for _, want := range []string{"dcs-memory", bin.Path, "version 2", "serves version 1"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not mention %q", msg, want)
		}
	}
	th.mu.Lock()
	left := len(th.plugins)
	th.mu.Unlock()
	if left != 0 {
		t.Errorf("%d plugin processes left after a failed launch", left)
	}
}

func TestPluginLogLinesReachTheHostLogger(t *testing.T) {
	th := newTestHost(t, nil)
	bin := installPlugin(t, th.dir, "dcs-memory", nil)
	p, err := th.Launch(context.Background(), bin)
	if err != nil {
		t.Fatal(err)
	}
	pid := fmt.Sprint(p.Pid())
	poll.Eventually(t, 5*time.Second, "the plugin's start line in the host log", func() bool {
		return len(th.logs.withMessage(t, "test plugin starting", "plugin", "dcs-memory", "pid", pid)) == 1
	})

	e := th.logs.withMessage(t, "test plugin starting")[0]
	if e["@level"] != "info" {
		t.Errorf("level %v, want info", e["@level"])
	}
	// The line keeps the plugin's own logger name and gains the host's
	// plugin key.
	if e["@module"] != "memory" || e["protocol"] != float64(1) {
		t.Errorf("fields of the plugin's line lost: %v", e)
	}
}

func TestFindDCS(t *testing.T) {
	th := newTestHost(t, nil)
	installPlugin(t, th.dir, "dcs-memory", nil)
	installPlugin(t, th.dir, "dcs-liar", &knobs{Name: "honest"})
	installPlugin(t, th.dir, "oddly-named", &knobs{Name: "zk"})
	ctx := context.Background()

	p, err := th.FindDCS(ctx, "memory")
	if err != nil {
		t.Fatal(err)
	}
	if p.Binary.Name != "dcs-memory" {
		t.Errorf("found %s for memory", p.Binary.Name)
	}
	p.Kill()

	p, err = th.FindDCS(ctx, "zk")
	if err != nil {
		t.Fatal(err)
	}
	if p.Binary.Name != "oddly-named" || p.Identity.Name != "zk" {
		t.Errorf("found %s (%s) for zk", p.Binary.Name, p.Identity)
	}
	p.Kill()

	_, err = th.FindDCS(ctx, "etcd3")
	if err == nil {
		t.Fatal("found a plugin named etcd3")
	}
	for _, want := range []string{`"etcd3"`, th.dir, "custos-plugin-dcs-etcd3", "dcs-memory: memory 0.0.1-test (dcs)", "dcs-liar: honest", "oddly-named: zk"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	th.mu.Lock()
	left := len(th.plugins)
	th.mu.Unlock()
	if left != 0 {
		t.Errorf("%d plugin processes left running after FindDCS", left)
	}

	empty := newTestHost(t, nil)
	if _, err := empty.FindDCS(ctx, "etcd3"); err == nil || !strings.Contains(err.Error(), "holds no custos-plugin-*") {
		t.Errorf("empty directory: %v", err)
	}
}

func TestShutdownKillsEveryPlugin(t *testing.T) {
	th := newTestHost(t, nil)
	a := installPlugin(t, th.dir, "dcs-memory", nil)
	b := installPlugin(t, th.dir, "dcs-other", &knobs{Name: "other"})
	ctx := context.Background()
	pa, err := th.Launch(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	pb, err := th.Launch(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	s, err := th.OpenDCS(ctx, "memory")
	if err != nil {
		t.Fatal(err)
	}
	pids := []int{pa.Pid(), pb.Pid(), s.Pid()}
	th.Shutdown()
	for _, pid := range pids {
		if !processGone(pid) {
			t.Errorf("plugin process %d survived Shutdown", pid)
		}
	}
	if _, err := s.GetCluster(ctx); !errors.Is(err, dcs.ErrUnavailable) {
		t.Errorf("supervised backend after Shutdown: want ErrUnavailable, got %v", err)
	}
	if _, err := th.Launch(ctx, a); err == nil || !strings.Contains(err.Error(), "shut down") {
		t.Errorf("Launch after Shutdown: %v", err)
	}
}

func TestLaunchHonoursCancelledContext(t *testing.T) {
	th := newTestHost(t, nil)
	bin := installPlugin(t, th.dir, "dcs-memory", nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := th.Launch(ctx, bin); !errors.Is(err, context.Canceled) {
		t.Errorf("want context.Canceled, got %v", err)
	}
}

// The plugin's environment as exec builds it: the host's defaults, then the
// agent's environment (go-plugin appends it), the last duplicate winning.
func TestPluginEnvDefaultsGOMAXPROCS(t *testing.T) {
	lookup := func(env []string) string {
		cmd := exec.Command("/bin/true")
		cmd.Env = env
		for _, kv := range cmd.Environ() {
			if v, ok := strings.CutPrefix(kv, "GOMAXPROCS="); ok {
				return v
			}
		}
		return ""
	}
	env := pluginEnv(hclog.Info)
	if got := lookup(append(env, "PATH=/usr/bin")); got != "1" {
		t.Fatalf("GOMAXPROCS = %q without one in the agent's environment, want 1", got)
	}
	if got := lookup(append(env, "GOMAXPROCS=4")); got != "4" {
		t.Fatalf("GOMAXPROCS = %q with GOMAXPROCS=4 in the agent's environment, want 4", got)
	}
}

// A plugin that floods stderr has its lines re-emitted at pluginLogRate
// with a burst of pluginLogBurst; the rest are dropped and counted in one
// warning, and the plugin keeps serving.
func TestPluginStderrIsRateLimited(t *testing.T) {
	const flood = 5000
	th := newTestHost(t, nil)
	bin := installPlugin(t, th.dir, "dcs-memory", &knobs{FloodLines: flood})
	start := time.Now()
	p, err := th.Launch(context.Background(), bin)
	if err != nil {
		t.Fatal(err)
	}
	b, err := p.DCS()
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Configure(context.Background(), dcs.ConfigureRequest{Scope: "s", Member: "m", TTL: 5 * time.Second}); err != nil {
		t.Fatalf("the flooding plugin does not serve: %v", err)
	}
	// Kill waits until go-plugin has read the whole of stderr.
	p.Kill()
	elapsed := time.Since(start)

	emitted := len(th.logs.withMessage(t, "flood"))
	most := pluginLogBurst + int(elapsed.Seconds()*pluginLogRate) + 1
	if emitted < pluginLogBurst || emitted > most {
		t.Errorf("%d of %d flood lines re-emitted in %s, want between %d and %d", emitted, flood, elapsed, pluginLogBurst, most)
	}
	if n := len(th.logs.withMessage(t, "plugin logs too fast; dropping its lines above the limit")); n != 1 {
		t.Errorf("%d warnings that lines are dropped, want 1", n)
	}
	dropped := 0
	for _, e := range th.logs.withMessage(t, "plugin log lines dropped", "plugin", "dcs-memory") {
		n, _ := e["dropped"].(float64)
		dropped += int(n)
	}
	if emitted+dropped < flood {
		t.Errorf("%d flood lines re-emitted and %d lines counted as dropped: %d flood lines unaccounted for", emitted, dropped, flood-emitted-dropped)
	}
}
