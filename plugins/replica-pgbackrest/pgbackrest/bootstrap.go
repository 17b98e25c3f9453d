package pgbackrest

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/hashicorp/go-hclog"

	"github.com/custos-ha/custos/plugin/sdk/bootstrap"
	"github.com/custos-ha/custos/plugin/sdk/replica"
)

// BootstrapCapabilities is what the plugin announces for the bootstrap
// kind: the "pgbackrest" method, which takes a recovery target.
func BootstrapCapabilities() map[string]string {
	return map[string]string{bootstrap.CapMethods: Method, bootstrap.CapTargets: Method}
}

// Bootstrapper creates new clusters by restoring a pgBackRest backup
// ([bootstrap.pgbackrest], the same keys as the replica section). It
// implements bootstrap.Creator: the host starts the restored cluster with
// the recovery target and the restore_command this returns.
type Bootstrapper struct {
	logger hclog.Logger
}

var _ bootstrap.Creator = (*Bootstrapper)(nil)

// NewBootstrapper returns a Bootstrapper logging to logger (nil: none).
func NewBootstrapper(logger hclog.Logger) *Bootstrapper {
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	return &Bootstrapper{logger: logger}
}

// Validate implements bootstrap.Creator.
func (b *Bootstrapper) Validate(_ context.Context, method string, config []byte) error {
	if method != Method {
		return fmt.Errorf("method %q (this plugin serves %q): %w", method, Method, bootstrap.ErrUnknownMethod)
	}
	_, err := ParseConfig(config)
	return err
}

// CreateCluster implements bootstrap.Creator: `pgbackrest restore` into
// the empty req.DataDir (recovery to the end of the archive; the host
// stops it at req.Target), then the recovery settings pgBackRest wrote are
// taken out: the restore_command is returned, the rest removed.
func (b *Bootstrapper) CreateCluster(ctx context.Context, req bootstrap.Request, progress func(bootstrap.Progress)) (bootstrap.Result, error) {
	if progress == nil {
		progress = func(bootstrap.Progress) {}
	}
	if req.Method != Method {
		return bootstrap.Result{}, fmt.Errorf("method %q (this plugin serves %q): %w", req.Method, Method, bootstrap.ErrUnknownMethod)
	}
	if err := req.Check(); err != nil {
		return bootstrap.Result{}, err
	}
	if err := ctx.Err(); err != nil {
		return bootstrap.Result{}, err // an ended context starts nothing
	}
	cfg, err := ParseConfig(req.Config)
	if err != nil {
		return bootstrap.Result{}, err
	}
	target, err := claim(req.DataDir, false)
	if err != nil {
		return bootstrap.Result{}, err
	}
	restore := Restore{Config: cfg, DataDir: target.path()}
	logger := b.logger.With("data_dir", restore.DataDir, "stanza", cfg.Stanza)
	progress(bootstrap.Progress{Message: fmt.Sprintf("restoring stanza %q from %s for a new cluster", cfg.Stanza, cfg.RepoDescription()), Percent: bootstrap.PercentUnknown})
	env := os.Environ()
	for k, v := range req.Env {
		env = append(env, k+"="+v)
	}
	err = restore.Run(ctx, logger, env, func(p replica.Progress) {
		progress(bootstrap.Progress{Message: p.Message, Percent: p.Percent, DoneBytes: p.DoneBytes, TotalBytes: p.TotalBytes})
	})
	var res bootstrap.Result
	if err == nil {
		err = checkRestored(restore.DataDir)
	}
	if err == nil {
		res.RestoreCommand, err = restoreCommandIn(restore.DataDir)
	}
	if err == nil {
		err = bootstrap.RemoveRecoveryConfig(restore.DataDir)
	}
	if err == nil {
		err = res.Check()
	}
	if err != nil {
		logger.Error("pgbackrest restore of a new cluster failed; removing the partial restore", "error", err)
		if resetErr := target.reset(); resetErr != nil {
			return bootstrap.Result{}, fmt.Errorf("%w; %v", err, resetErr)
		}
		return bootstrap.Result{}, err
	}
	progress(bootstrap.Progress{Message: "restore completed", Percent: 100})
	return res, nil
}

// restoreCommandIn reads the restore_command pgBackRest wrote into the
// restored cluster's postgresql.auto.conf (the last setting wins, as in
// PostgreSQL).
func restoreCommandIn(dataDir string) (string, error) {
	data, err := os.ReadFile(filepath.Join(dataDir, "postgresql.auto.conf"))
	if err != nil {
		return "", fmt.Errorf("reading the restore_command pgbackrest wrote: %w", err)
	}
	cmd := ""
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		name, value, ok := strings.Cut(strings.TrimSpace(sc.Text()), "=")
		if !ok || strings.TrimSpace(name) != "restore_command" {
			continue
		}
		v, err := unquoteConf(strings.TrimSpace(value))
		if err != nil {
			return "", fmt.Errorf("postgresql.auto.conf: restore_command: %w", err)
		}
		cmd = v
	}
	if cmd == "" {
		return "", fmt.Errorf("pgbackrest wrote no restore_command into %s", filepath.Join(dataDir, "postgresql.auto.conf"))
	}
	return cmd, nil
}

// unquoteConf reads a single-quoted PostgreSQL configuration value, in
// which two single quotes, or a backslash before a character, stand for
// that character.
func unquoteConf(v string) (string, error) {
	if len(v) < 2 || v[0] != '\'' {
		return "", fmt.Errorf("%q is not a quoted value", v)
	}
	var b strings.Builder
	for i := 1; i < len(v); i++ {
		switch c := v[i]; {
		case c == '\'' && i+1 < len(v) && v[i+1] == '\'':
			b.WriteByte('\'')
			i++
		case c == '\\' && i+1 < len(v):
			b.WriteByte(v[i+1])
			i++
		case c == '\'':
			return b.String(), nil
		default:
			b.WriteByte(c)
		}
	}
	return "", fmt.Errorf("%q has no closing quote", v)
}
