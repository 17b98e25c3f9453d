package basebackup

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/custos-ha/custos/plugin/sdk"
	"github.com/custos-ha/custos/plugin/sdk/replica"
)

// Method is the replica method this package serves.
const Method = "basebackup"

// Attempts, as in Patroni.
const (
	// maxAttempts: a second attempt rides out a brief hiccup of the source
	// (a restart, a full max_wal_senders) without hiding a real failure
	// for long.
	maxAttempts = 2
	// RetryDelay is the pause between attempts: long enough for a
	// restarting source to come back, short enough not to stall the HA
	// loop's replica creation.
	RetryDelay = 5 * time.Second
	// tailLines is how many of pg_basebackup's last output lines a failure
	// quotes.
	tailLines = 5
)

// minCompressMajor is the first PostgreSQL major whose pg_basebackup
// decompresses a server-compressed stream into a plain-format copy.
const minCompressMajor = 15

// Capabilities is what the plugin announces in its identity.
func Capabilities() map[string]string {
	return map[string]string{
		replica.CapMethods:  Method,
		replica.CapNoLeader: "false",
	}
}

// Creator creates replicas with pg_basebackup. It implements
// replica.Creator.
type Creator struct {
	logger hclog.Logger
	// retryDelay is RetryDelay; tests shorten it.
	retryDelay time.Duration
}

var _ replica.Creator = (*Creator)(nil)

// New returns a Creator logging to logger (nil: no logs).
func New(logger hclog.Logger) *Creator {
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	return &Creator{logger: logger, retryDelay: RetryDelay}
}

// Validate implements replica.Creator.
func (c *Creator) Validate(_ context.Context, method string, config []byte) error {
	if method != Method {
		return fmt.Errorf("method %q (this plugin serves %q): %w", method, Method, replica.ErrUnknownMethod)
	}
	_, err := ParseOptions(config)
	return err
}

// CreateReplica implements replica.Creator.
func (c *Creator) CreateReplica(ctx context.Context, req replica.Request, progress func(replica.Progress)) error {
	if progress == nil {
		progress = func(replica.Progress) {}
	}
	if req.Method != Method {
		return fmt.Errorf("method %q (this plugin serves %q): %w", req.Method, Method, replica.ErrUnknownMethod)
	}
	opts, err := ParseOptions(req.Config)
	if err != nil {
		return err
	}
	if req.Role != "" && req.Role != replica.RoleReplica {
		return fmt.Errorf("role %q: only %q is supported: %w", req.Role, replica.RoleReplica, replica.ErrInvalidRequest)
	}
	if req.Source == nil {
		return fmt.Errorf("pg_basebackup copies a running member: %w", replica.ErrNoSource)
	}
	if err := req.Source.Check(); err != nil {
		return err
	}
	dataDir, err := replica.ClaimDataDir(req.DataDir)
	if err != nil {
		return err
	}
	tool := toolPath(req.BinDir)
	env := childEnv(req)
	if _, ok := opts.Get("compress"); ok {
		major, err := toolMajor(ctx, tool, env)
		if err != nil {
			return err
		}
		if major < minCompressMajor {
			errs := &sdk.ConfigError{}
			errs.Add("compress", "needs pg_basebackup %d or later, %s is %d", minCompressMajor, tool, major)
			return errs
		}
	}
	args := append([]string{
		"--pgdata=" + dataDir.Path(),
		"-X", "stream",
		"--dbname=" + req.Source.DSN(),
		"--progress",
		"--verbose",
	}, opts.Args()...)
	logger := c.logger.With("data_dir", dataDir.Path(), "source", req.Source.Member)

	var lastErr error
	for attempt := 1; attempt <= maxAttempts; attempt++ {
		logger.Info("running pg_basebackup", "attempt", attempt, "options", strings.Join(opts.Args(), " "))
		progress(replica.Progress{
			Message: fmt.Sprintf("pg_basebackup attempt %d of %d from %s", attempt, maxAttempts, describe(req.Source)),
			Percent: replica.PercentUnknown,
		})
		lastErr = c.run(ctx, logger, tool, args, env, progress)
		if lastErr == nil {
			logger.Info("replica created with pg_basebackup")
			return nil
		}
		if err := dataDir.Reset(); err != nil {
			return errors.Join(lastErr, err)
		}
		if ctx.Err() != nil {
			return fmt.Errorf("creating replica with pg_basebackup: %w", ctx.Err())
		}
		logger.Error("pg_basebackup failed", "attempt", attempt, "error", lastErr)
		if attempt == maxAttempts {
			break
		}
		progress(replica.Progress{
			Message: fmt.Sprintf("pg_basebackup failed (%v); trying again in %s", lastErr, c.retryDelay),
			Percent: replica.PercentUnknown,
		})
		timer := time.NewTimer(c.retryDelay)
		select {
		case <-ctx.Done():
			timer.Stop()
			return fmt.Errorf("creating replica with pg_basebackup: %w", ctx.Err())
		case <-timer.C:
		}
	}
	return fmt.Errorf("creating replica with pg_basebackup from %s: %d attempts failed, the last: %w", describe(req.Source), maxAttempts, lastErr)
}

// run is one pg_basebackup attempt.
func (c *Creator) run(ctx context.Context, logger hclog.Logger, tool string, args, env []string, progress func(replica.Progress)) error {
	cmd := exec.Command(tool, args...)
	cmd.Env = env
	var tail []string
	err := replica.RunCommand(ctx, cmd, func(line string) {
		p, isProgress := ParseProgress(line)
		if isProgress {
			logger.Debug("pg_basebackup progress", "line", strings.TrimSpace(line))
		} else {
			logger.Info("pg_basebackup", "line", line)
			tail = append(tail, line)
			if len(tail) > tailLines {
				tail = tail[1:]
			}
		}
		progress(p)
	})
	if err != nil && ctx.Err() == nil && len(tail) > 0 {
		return fmt.Errorf("%w: %s", err, strings.Join(tail, " | "))
	}
	return err
}

// toolPath is pg_basebackup in binDir, or on PATH when binDir is empty.
func toolPath(binDir string) string {
	if binDir == "" {
		return "pg_basebackup"
	}
	return filepath.Join(binDir, "pg_basebackup")
}

// childEnv is the plugin's environment, then the request's, then what the
// plugin needs: the pgpass file and untranslated messages (the progress
// parser reads them).
func childEnv(req replica.Request) []string {
	env := os.Environ()
	for k, v := range req.Env {
		env = append(env, k+"="+v)
	}
	if req.Source != nil && req.Source.PassFile != "" {
		env = append(env, "PGPASSFILE="+req.Source.PassFile)
	}
	return append(env, "LC_ALL=C")
}

var versionLine = regexp.MustCompile(`\(PostgreSQL\) ([0-9]+)`)

// toolMajor asks pg_basebackup for its major version.
func toolMajor(ctx context.Context, tool string, env []string) (int, error) {
	cmd := exec.CommandContext(ctx, tool, "--version")
	cmd.Env = env
	out, err := cmd.Output()
	if err != nil {
		return 0, fmt.Errorf("running %s --version: %w", tool, err)
	}
	m := versionLine.FindSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("parsing the version of %s: %q", tool, strings.TrimSpace(string(out)))
	}
	return strconv.Atoi(string(m[1]))
}

// describe names a source for messages (never with a password: the
// connection string carries none).
func describe(s *replica.Source) string {
	if s.Member != "" {
		return fmt.Sprintf("member %s (%s)", s.Member, s.DSN())
	}
	return s.DSN()
}
