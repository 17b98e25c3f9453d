package pgbackrest

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/hashicorp/go-hclog"

	"github.com/custos-ha/custos/plugin/sdk/replica"
)

// Method is the replica method this package serves; its section is
// [postgresql.pgbackrest].
const Method = "pgbackrest"

// Capabilities is what the plugin announces in its identity: a restore
// needs no running member, and can reuse an old data directory.
func Capabilities() map[string]string {
	return map[string]string{
		replica.CapMethods:  Method,
		replica.CapNoLeader: "true",
		replica.CapKeepData: "true",
	}
}

// Creator creates replicas by restoring a pgBackRest backup as a standby.
// It implements replica.Creator.
type Creator struct {
	logger hclog.Logger
}

var _ replica.Creator = (*Creator)(nil)

// New returns a Creator logging to logger (nil: no logs).
func New(logger hclog.Logger) *Creator {
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	return &Creator{logger: logger}
}

// Validate implements replica.Creator.
func (c *Creator) Validate(_ context.Context, method string, config []byte) error {
	if method != Method {
		return fmt.Errorf("method %q (this plugin serves %q): %w", method, Method, replica.ErrUnknownMethod)
	}
	_, err := ParseConfig(config)
	return err
}

// CreateReplica implements replica.Creator: `pgbackrest restore
// --type=standby` into req.DataDir, with --delta into an old copy when
// req.KeepData. The source member, when there is one, is not contacted:
// the standby reaches it through the host's primary_conninfo later.
func (c *Creator) CreateReplica(ctx context.Context, req replica.Request, progress func(replica.Progress)) error {
	if progress == nil {
		progress = func(replica.Progress) {}
	}
	if req.Method != Method {
		return fmt.Errorf("method %q (this plugin serves %q): %w", req.Method, Method, replica.ErrUnknownMethod)
	}
	cfg, err := ParseConfig(req.Config)
	if err != nil {
		return err
	}
	if req.Role != "" && req.Role != replica.RoleReplica {
		return fmt.Errorf("role %q: only %q is supported: %w", req.Role, replica.RoleReplica, replica.ErrInvalidRequest)
	}
	// Unused, but a source that carries a password is refused as by
	// every method: the host should never send one.
	if req.Source != nil {
		if err := req.Source.Check(); err != nil {
			return err
		}
	}
	target, err := claim(req.DataDir, req.KeepData)
	if err != nil {
		return err
	}
	restore := Restore{Config: cfg, DataDir: target.path(), Standby: true, Delta: target.kept != ""}
	logger := c.logger.With("data_dir", restore.DataDir, "stanza", cfg.Stanza, "delta", restore.Delta)
	how := "into an empty directory"
	if restore.Delta {
		how = "over the old copy (--delta)"
	}
	progress(replica.Progress{
		Message: fmt.Sprintf("restoring stanza %q from %s %s", cfg.Stanza, cfg.RepoDescription(), how),
		Percent: replica.PercentUnknown,
	})
	err = restore.Run(ctx, logger, childEnv(req), progress)
	if err == nil {
		err = checkRestored(restore.DataDir)
	}
	if err == nil {
		progress(replica.Progress{Message: "restore completed", Percent: 100})
		return nil
	}
	logger.Error("pgbackrest restore failed; removing the partial restore", "error", err)
	if resetErr := target.reset(); resetErr != nil {
		return errors.Join(err, resetErr)
	}
	return err
}

// checkRestored fails a restore that pgbackrest reported done but that
// left no cluster: a reply that makes no sense is not trusted.
func checkRestored(dir string) error {
	for _, f := range []string{"PG_VERSION", filepath.Join("global", "pg_control")} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			return fmt.Errorf("pgbackrest restore reported success but %s lacks %s: %w", dir, f, err)
		}
	}
	return nil
}

// childEnv is the plugin's environment, then the request's: pgBackRest
// takes secrets from PGBACKREST_* variables there.
func childEnv(req replica.Request) []string {
	env := os.Environ()
	for k, v := range req.Env {
		env = append(env, k+"="+v)
	}
	return env
}

// restoreTarget is the data directory a restore writes: claimed empty
// under the contract's rules, or an old copy kept for --delta.
type restoreTarget struct {
	claimed *replica.DataDir
	// kept is the absolute path of an old copy restored over.
	kept string
}

// claim takes the data directory for a restore. An absent one is created
// (pgBackRest restores into an existing directory) and removed again by
// reset. A non-empty one is refused unless keepData; PostgreSQL must not
// run in a kept one.
func claim(dir string, keepData bool) (*restoreTarget, error) {
	d, err := replica.ClaimDataDir(dir)
	if err == nil {
		if !d.Existed() {
			if err := os.Mkdir(d.Path(), 0o700); err != nil {
				return nil, fmt.Errorf("creating data directory %s: %w", d.Path(), err)
			}
		}
		return &restoreTarget{claimed: d}, nil
	}
	if !keepData || !errors.Is(err, replica.ErrDataDirNotEmpty) {
		return nil, err
	}
	abs, absErr := filepath.Abs(dir)
	if absErr != nil {
		return nil, err
	}
	if st, statErr := os.Lstat(abs); statErr != nil || !st.IsDir() {
		return nil, err // not a directory: nothing to keep
	}
	if _, pidErr := os.Stat(filepath.Join(abs, "postmaster.pid")); !errors.Is(pidErr, fs.ErrNotExist) {
		return nil, fmt.Errorf("keeping data directory %s: postmaster.pid is there, PostgreSQL may be running; stop it first: %w", abs, replica.ErrInvalidRequest)
	}
	return &restoreTarget{kept: abs}, nil
}

func (t *restoreTarget) path() string {
	if t.kept != "" {
		return t.kept
	}
	return t.claimed.Path()
}

// reset removes a failed restore: a claimed directory goes back to how it
// was found; a kept one is emptied, since --delta may have rewritten any
// of its files (the targets of its pg_wal and tablespace links too).
func (t *restoreTarget) reset() error {
	if t.kept == "" {
		return t.claimed.Reset()
	}
	var errs []error
	links := []string{filepath.Join(t.kept, "pg_wal")}
	if entries, err := os.ReadDir(filepath.Join(t.kept, "pg_tblspc")); err == nil {
		for _, e := range entries {
			links = append(links, filepath.Join(t.kept, "pg_tblspc", e.Name()))
		}
	}
	for _, l := range links {
		st, err := os.Lstat(l)
		if err != nil || st.Mode()&fs.ModeSymlink == 0 {
			continue
		}
		if target, err := filepath.EvalSymlinks(l); err == nil {
			errs = append(errs, removeContents(target))
		}
	}
	errs = append(errs, removeContents(t.kept))
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("emptying data directory %s after a failed restore: %w", t.kept, err)
	}
	return nil
}

// removeContents removes everything inside dir, keeping dir.
func removeContents(dir string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range entries {
		errs = append(errs, os.RemoveAll(filepath.Join(dir, e.Name())))
	}
	return errors.Join(errs...)
}
