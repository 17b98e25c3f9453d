package bootstraptest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/custos-ha/custos/plugin/sdk/bootstrap"
	"github.com/custos-ha/custos/plugin/sdk/replica"
	"github.com/custos-ha/custos/plugin/sdk/section"
)

// The methods Reference serves.
const (
	// MethodFake writes a placeholder data directory: PostgreSQL cannot
	// start it.
	MethodFake = "fake"
	// MethodClone creates a new cluster from a running one with
	// pg_basebackup.
	MethodClone = "clone"
)

// ReferenceCapabilities are the capabilities Reference announces: both
// methods, and MethodFake restores to a target.
func ReferenceCapabilities() map[string]string {
	return map[string]string{
		bootstrap.CapMethods: MethodFake + "," + MethodClone,
		bootstrap.CapTargets: MethodFake,
	}
}

// failLines is how many of pg_basebackup's last lines a failure quotes.
const failLines = 3

// connectTimeout bounds pg_basebackup's connection attempt, so that a
// source nobody listens on fails the clone promptly.
const connectTimeout = "10"

// Reference is the reference Creator: the contract written as plainly as
// possible, for the kit's own tests, for the host's unit tests and as an
// example for plugin authors. It is safe for concurrent use. It serves
// two methods.
//
// MethodFake writes PG_VERSION, global/pg_control and a few other files
// of placeholder content step by step, the way a restore tool leaves
// them (recovery settings included, which it then removes), and honours
// any recovery target (it has nothing to choose from). Its section takes
// three keys, all optional:
//
//	delay = "1s"                   # pause before each of the 8 steps
//	fail = "message"               # fail with this message half-way
//	restore_command = "cp %f %p"   # returned in the Result
//
// MethodClone creates a new cluster from a running one with pg_basebackup
// (WAL streamed into the copy, so PostgreSQL starts from it without an
// archive), the way Patroni's custom bootstrap clones a cluster. It takes
// no recovery target. Its section:
//
//	host = "10.0.0.1"              # required
//	port = 5432
//	user = "replicator"
//	dbname = "postgres"
//	passfile = "/path/to/pgpass"   # the password, handed over as PGPASSFILE
//	max_rate = "1M"                # pg_basebackup --max-rate
//	restore_command = "cp /archive/%f %p"   # returned in the Result
type Reference struct {
	mu       sync.Mutex
	requests []bootstrap.Request
}

var _ bootstrap.Creator = (*Reference)(nil)

// NewReference returns a Reference that has seen no request.
func NewReference() *Reference { return &Reference{} }

// Requests returns every request CreateCluster received, oldest first.
func (r *Reference) Requests() []bootstrap.Request {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.requests)
}

type fakeConfig struct {
	delay          time.Duration
	fail           string
	restoreCommand string
}

type cloneConfig struct {
	source         replica.Source
	maxRate        string
	restoreCommand string
}

// parse decodes a method's section; an unknown method is
// ErrUnknownMethod.
func parse(method string, data []byte) (any, error) {
	switch method {
	case MethodFake, MethodClone:
	default:
		return nil, fmt.Errorf("method %q: %w", method, bootstrap.ErrUnknownMethod)
	}
	d, err := section.New(data)
	if err != nil {
		return nil, err
	}
	var restoreCommand string
	d.String("restore_command", &restoreCommand)
	if restoreCommand != "" && !d.Failed("restore_command") {
		if err := (bootstrap.Result{RestoreCommand: restoreCommand}).Check(); err != nil {
			d.Add(d.Path("restore_command"), "%v", err)
		}
	}
	if method == MethodFake {
		c := fakeConfig{restoreCommand: restoreCommand}
		d.Duration("delay", &c.delay)
		d.String("fail", &c.fail)
		return c, d.Err()
	}
	c := cloneConfig{restoreCommand: restoreCommand, source: replica.Source{Port: 5432}}
	d.String("host", &c.source.Host)
	d.Port("port", &c.source.Port)
	d.String("user", &c.source.User)
	d.String("dbname", &c.source.DBName)
	d.String("passfile", &c.source.PassFile)
	d.String("max_rate", &c.maxRate)
	if c.source.Host == "" && !d.Failed("host") {
		d.Add(d.Path("host"), "missing required value: the host of the cluster to clone")
	}
	return c, d.Err()
}

// Validate implements bootstrap.Creator.
func (r *Reference) Validate(_ context.Context, method string, config []byte) error {
	_, err := parse(method, config)
	return err
}

// CreateCluster implements bootstrap.Creator. In order, touching nothing
// before the last: an ended ctx, an unknown method, a refused section, a
// target for MethodClone, a data directory that is not absent or empty.
func (r *Reference) CreateCluster(ctx context.Context, req bootstrap.Request, progress func(bootstrap.Progress)) (bootstrap.Result, error) {
	r.mu.Lock()
	r.requests = append(r.requests, req)
	r.mu.Unlock()
	if progress == nil {
		progress = func(bootstrap.Progress) {}
	}
	if err := ctx.Err(); err != nil {
		return bootstrap.Result{}, fmt.Errorf("creating cluster: %w", err)
	}
	cfg, err := parse(req.Method, req.Config)
	if err != nil {
		return bootstrap.Result{}, err
	}
	if _, clone := cfg.(cloneConfig); clone && req.Target != nil {
		return bootstrap.Result{}, fmt.Errorf("method %s clones a running cluster as it is now: it takes no recovery target: %w", MethodClone, bootstrap.ErrInvalidRequest)
	}
	dd, err := replica.ClaimDataDir(req.DataDir)
	if err != nil {
		return bootstrap.Result{}, err
	}
	var res bootstrap.Result
	switch c := cfg.(type) {
	case fakeConfig:
		res, err = createFake(ctx, dd, c, progress)
	case cloneConfig:
		res, err = createClone(ctx, dd, req, c, progress)
	}
	if err == nil {
		err = bootstrap.RemoveRecoveryConfig(dd.Path())
	}
	if err != nil {
		if rerr := dd.Reset(); rerr != nil {
			err = errors.Join(err, rerr)
		}
		return bootstrap.Result{}, err
	}
	return res, nil
}

// fakeFiles are what MethodFake writes, one a step: a data directory's
// landmarks, and the recovery settings a restore tool writes.
var fakeFiles = []struct {
	name    string
	content string
}{
	{"PG_VERSION", "15\n"},
	{"global/pg_control", strings.Repeat("\x00", 8192)},
	{"base/1/PG_VERSION", "15\n"},
	{"base/1/1259", strings.Repeat("\x00", 8192)},
	{"pg_wal/000000010000000000000001", strings.Repeat("\x00", 8192)},
	{"postgresql.conf", "# placeholder\n"},
	{"postgresql.auto.conf", "# Do not edit this file manually!\nrestore_command = 'false %f %p'\nrecovery_target_action = 'promote'\n"},
	{"recovery.signal", ""},
}

func createFake(ctx context.Context, dd *replica.DataDir, c fakeConfig, progress func(bootstrap.Progress)) (bootstrap.Result, error) {
	if err := os.MkdirAll(dd.Path(), 0o700); err != nil {
		return bootstrap.Result{}, err
	}
	if err := os.Chmod(dd.Path(), 0o700); err != nil {
		return bootstrap.Result{}, err
	}
	var total, done int64
	for _, f := range fakeFiles {
		total += int64(len(f.content))
	}
	for i, f := range fakeFiles {
		if c.delay > 0 {
			timer := time.NewTimer(c.delay)
			select {
			case <-ctx.Done():
				timer.Stop()
				return bootstrap.Result{}, fmt.Errorf("writing placeholder files stopped: %w", ctx.Err())
			case <-timer.C:
			}
		} else if err := ctx.Err(); err != nil {
			return bootstrap.Result{}, fmt.Errorf("writing placeholder files stopped: %w", err)
		}
		if c.fail != "" && i == len(fakeFiles)/2 {
			return bootstrap.Result{}, errors.New(c.fail)
		}
		path := filepath.Join(dd.Path(), f.name)
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return bootstrap.Result{}, err
		}
		if err := os.WriteFile(path, []byte(f.content), 0o600); err != nil {
			return bootstrap.Result{}, err
		}
		done += int64(len(f.content))
		progress(bootstrap.Progress{Message: "wrote " + f.name, Percent: (i + 1) * 100 / len(fakeFiles), DoneBytes: done, TotalBytes: total})
	}
	return bootstrap.Result{RestoreCommand: c.restoreCommand}, nil
}

// basebackupProgress reads pg_basebackup's --progress line:
// "  1234/30000 kB (4%), 0/1 tablespace".
var basebackupProgress = regexp.MustCompile(`(\d+)/(\d+) kB \((\d+)%\)`)

func createClone(ctx context.Context, dd *replica.DataDir, req bootstrap.Request, c cloneConfig, progress func(bootstrap.Progress)) (bootstrap.Result, error) {
	if err := c.source.Check(); err != nil {
		return bootstrap.Result{}, err
	}
	// pg_basebackup keeps the mode of a directory it did not create;
	// PostgreSQL wants 0700 (or 0750).
	if dd.Existed() {
		if err := os.Chmod(dd.Path(), 0o700); err != nil {
			return bootstrap.Result{}, err
		}
	}
	bin := "pg_basebackup"
	if req.BinDir != "" {
		bin = filepath.Join(req.BinDir, bin)
	}
	args := []string{"--pgdata=" + dd.Path(), "--wal-method=stream", "--checkpoint=fast", "--progress", "--verbose",
		"--dbname=" + c.source.DSN()}
	if c.maxRate != "" {
		args = append(args, "--max-rate="+c.maxRate)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "PGCONNECT_TIMEOUT="+connectTimeout, "LC_ALL=C")
	if c.source.PassFile != "" {
		cmd.Env = append(cmd.Env, "PGPASSFILE="+c.source.PassFile)
	}
	for k, v := range req.Env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	progress(bootstrap.Progress{Message: "cloning " + c.source.DSN(), Percent: bootstrap.PercentUnknown})
	var last []string // the tool's last lines, which say why it failed
	err := replica.RunCommand(ctx, cmd, func(line string) {
		last = append(last, strings.TrimSpace(line))
		if len(last) > failLines {
			last = last[1:]
		}
		p := bootstrap.Progress{Message: line, Percent: bootstrap.PercentUnknown}
		if m := basebackupProgress.FindStringSubmatch(line); m != nil {
			done, _ := strconv.ParseInt(m[1], 10, 64)
			total, _ := strconv.ParseInt(m[2], 10, 64)
			pct, _ := strconv.Atoi(m[3])
			p.Percent, p.DoneBytes, p.TotalBytes = min(pct, 100), done*1024, total*1024
		}
		progress(p)
	})
	if err != nil {
		if ctx.Err() == nil && len(last) > 0 {
			err = fmt.Errorf("%w: %s", err, strings.Join(last, " "))
		}
		return bootstrap.Result{}, fmt.Errorf("cloning %s: %w", c.source.DSN(), err)
	}
	return bootstrap.Result{RestoreCommand: c.restoreCommand}, nil
}
