//go:build integration

package e2e

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"

	"github.com/custos-ha/custos/core/internal/testenv"
	"github.com/custos-ha/custos/core/reaper"
	"github.com/custos-ha/custos/testkit/servers"
)

// env is what TestMain prepares once for every test.
var env struct {
	// custos is the agent binary built from this checkout.
	custos string
	// pluginDir holds the plugins the agents use, as `make build` lays
	// them out.
	pluginDir string
	// pgBinDir holds the PostgreSQL server programs.
	pgBinDir string
	// etcd is the one etcd every test shares (each with its own scope).
	etcd *servers.Etcd
	// kv reads and writes that etcd directly.
	kv *clientv3.Client
	// cred runs the agents as the postgres OS user when the tests run as
	// root; nil otherwise (they run as the current user).
	cred *syscall.Credential
}

// defaultParallel is how many tests run at once unless -test.parallel says
// otherwise: the tests mostly wait (for leases to expire, for servers to
// start), so more than GOMAXPROCS (2 on the CI machines) fit.
const defaultParallel = 4

// pluginsUsed are the plugins the agents under test load.
var pluginsUsed = []string{"dcs-etcd3", "dcs-consul", "dcs-kubernetes", "replica-basebackup", "replica-pgbackrest"}

func TestMain(m *testing.M) { os.Exit(runTests(m)) }

func runTests(m *testing.M) int {
	flag.Parse()
	parallelSet := false
	flag.Visit(func(f *flag.Flag) { parallelSet = parallelSet || f.Name == "test.parallel" })
	if !parallelSet {
		_ = flag.Set("test.parallel", strconv.Itoa(defaultParallel))
	}
	// Orphans of killed agents (a postmaster, its backends) are adopted by
	// this process instead of a PID 1 that may never reap them.
	stopReaper := reaper.Start(nil)
	tb := &mainTB{}
	code := 1
	if err := setUp(tb); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: %v\n", err)
	} else {
		code = m.Run()
	}
	tb.runCleanups()
	stopReaper()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "e2e: goroutines left behind: %v\n", err)
			code = 1
		}
	}
	return code
}

func setUp(tb *mainTB) error {
	root, err := repoRoot()
	if err != nil {
		return err
	}
	out, err := os.MkdirTemp("", "custos-e2e-bin-")
	if err != nil {
		return err
	}
	tb.Cleanup(func() { _ = os.RemoveAll(out) })
	if err := buildBinaries(root, out); err != nil {
		return err
	}
	if os.Getuid() == 0 {
		if env.cred, err = postgresCredential(); err != nil {
			return err
		}
	}
	return tb.do(func() {
		env.pgBinDir = testenv.PostgresBinDir(tb)
		if env.etcd, err = servers.StartEtcd(servers.EtcdConfig{}); err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(env.etcd.Stop)
		env.kv, err = clientv3.New(clientv3.Config{Endpoints: []string{env.etcd.Endpoint}, DialTimeout: 5 * time.Second})
		if err != nil {
			tb.Fatalf("etcd client: %v", err)
		}
		tb.Cleanup(func() { _ = env.kv.Close() })
	})
}

// repoRoot is the directory holding go.work, above this package.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.work")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.work above the test's directory: run the tests from the custos checkout")
		}
		dir = parent
	}
}

// buildBinaries builds custos and the plugins it needs into out and
// out/plugins, readable and runnable by the postgres user (plugin_dir
// must not be group or world writable).
func buildBinaries(root, out string) error {
	if err := os.Chmod(out, 0o755); err != nil {
		return err
	}
	env.custos = filepath.Join(out, "custos")
	env.pluginDir = filepath.Join(out, "plugins")
	if err := os.Mkdir(env.pluginDir, 0o755); err != nil {
		return err
	}
	type build struct{ dir, pkg, out string }
	builds := []build{{root, "./cmd/custos", env.custos}}
	for _, p := range pluginsUsed {
		// Each plugin is a module of its own: build it from its directory
		// so that GOWORK=off works too.
		builds = append(builds, build{filepath.Join(root, "plugins", p), ".", filepath.Join(env.pluginDir, "custos-plugin-"+p)})
	}
	for _, b := range builds {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		cmd := exec.CommandContext(ctx, "go", "build", "-o", b.out, b.pkg)
		cmd.Dir = b.dir
		outp, err := cmd.CombinedOutput()
		cancel()
		if err != nil {
			return fmt.Errorf("go build -o %s %s (in %s): %v\n%s", b.out, b.pkg, b.dir, err, outp)
		}
		if err := os.Chmod(b.out, 0o755); err != nil {
			return err
		}
	}
	return nil
}

// postgresCredential is the postgres OS user the agents run as.
func postgresCredential() (*syscall.Credential, error) {
	u, err := user.Lookup(testenv.PostgresUser)
	if err != nil {
		return nil, fmt.Errorf("looking up the %s user: %w (install PostgreSQL: apt-get install postgresql-15)", testenv.PostgresUser, err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	cred := &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	if ids, err := u.GroupIds(); err == nil {
		for _, g := range ids {
			if n, err := strconv.Atoi(g); err == nil {
				cred.Groups = append(cred.Groups, uint32(n))
			}
		}
	}
	return cred, nil
}

// mainTB lets TestMain use the testenv helpers, which take a testing.TB:
// it implements the methods they call; Fatal panics and do recovers.
type mainTB struct {
	testing.TB // nil: only the methods below may be called
	cleanups   []func()
}

type mainFatal string

func (tb *mainTB) Helper()                           {}
func (tb *mainTB) Cleanup(f func())                  { tb.cleanups = append(tb.cleanups, f) }
func (tb *mainTB) Fatal(args ...any)                 { panic(mainFatal(fmt.Sprint(args...))) }
func (tb *mainTB) Fatalf(format string, args ...any) { panic(mainFatal(fmt.Sprintf(format, args...))) }
func (tb *mainTB) Logf(format string, args ...any)   { fmt.Fprintf(os.Stderr, format+"\n", args...) }

// do runs f and turns a Fatal into an error.
func (tb *mainTB) do(f func()) (err error) {
	defer func() {
		if r := recover(); r != nil {
			msg, ok := r.(mainFatal)
			if !ok {
				panic(r)
			}
			err = errors.New(string(msg))
		}
	}()
	f()
	return nil
}

func (tb *mainTB) runCleanups() {
	for i := len(tb.cleanups) - 1; i >= 0; i-- {
		tb.cleanups[i]()
	}
}
