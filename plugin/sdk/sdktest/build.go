package sdktest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/custos-ha/custos/plugin/sdk"
)

// Builder builds the plugin whose main package is the test's directory
// (go build .) once per test process, into a directory outside /dev/shm,
// which may be mounted noexec. TestMain defers Close.
type Builder struct {
	name string
	once sync.Once
	dir  string
	path string
	err  error
}

// NewBuilder returns a builder for the plugin directory name (the binary is
// sdk.BinaryPrefix + name, as the host looks for it).
func NewBuilder(name string) *Builder { return &Builder{name: name} }

// Path builds the plugin the first time it is called and returns the
// binary's path; a failed build fails the test with the compiler's output.
func (b *Builder) Path(t testing.TB) string {
	t.Helper()
	b.once.Do(func() {
		if b.dir, b.err = os.MkdirTemp("", "custos-"+b.name+"-bin-"); b.err != nil {
			return
		}
		path := filepath.Join(b.dir, sdk.BinaryPrefix+b.name)
		if out, err := exec.Command("go", "build", "-o", path, ".").CombinedOutput(); err != nil {
			b.err = fmt.Errorf("go build: %v\n%s", err, out)
			return
		}
		b.path = path
	})
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.path
}

// Close removes what Path built.
func (b *Builder) Close() {
	if b.dir != "" {
		_ = os.RemoveAll(b.dir)
	}
}

// RaiseParallel sets -test.parallel to at least n unless the command line
// gives it: tests that mostly wait for TTLs fit many more side by side than
// GOMAXPROCS. TestMain calls it after flag.Parse.
func RaiseParallel(n int) {
	explicit := false
	flag.Visit(func(f *flag.Flag) { explicit = explicit || f.Name == "test.parallel" })
	if p := flag.Lookup("test.parallel"); !explicit && p != nil {
		if cur, err := strconv.Atoi(p.Value.String()); err == nil && cur < n {
			_ = p.Value.Set(strconv.Itoa(n))
		}
	}
}

// Context is a context that ends after timeout or with the test.
func Context(t testing.TB, timeout time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	t.Cleanup(cancel)
	return ctx
}

// Namespace returns "/test-<8 hex digits>", a DCS namespace no other test
// uses.
func Namespace(t testing.TB) string {
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return "/test-" + hex.EncodeToString(b[:])
}
