package pgbackrest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"

	"github.com/hashicorp/go-hclog"

	"github.com/custos-ha/custos/plugin/sdk/replica"
)

// Errors a failed restore wraps when pgBackRest's output says why.
var (
	// ErrStanzaNotFound: the repository has no such stanza (no
	// backup.info).
	ErrStanzaNotFound = errors.New("pgbackrest: stanza not found in the repository")
	// ErrNoBackup: the stanza exists but holds no backup to restore.
	ErrNoBackup = errors.New("pgbackrest: no backup to restore")
	// ErrRepoUnreachable: pgBackRest could not reach the repository.
	ErrRepoUnreachable = errors.New("pgbackrest: repository unreachable")
)

// TargetType is a recovery target type of pgBackRest's restore --type.
type TargetType string

// Recovery target types.
const (
	// TargetImmediate stops recovery as soon as the restored backup is
	// consistent.
	TargetImmediate TargetType = "immediate"
	// TargetTime stops at a time stamp ("2026-12-08 10:00:00+00").
	TargetTime TargetType = "time"
	// TargetLSN stops at a WAL location ("0/3000060").
	TargetLSN TargetType = "lsn"
	// TargetXID stops at a transaction id.
	TargetXID TargetType = "xid"
	// TargetName stops at a restore point made by pg_create_restore_point.
	TargetName TargetType = "name"
)

// Target actions: what PostgreSQL does once the target is reached.
const (
	ActionPause    = "pause"
	ActionPromote  = "promote"
	ActionShutdown = "shutdown"
)

// Target says where the recovery of a restored cluster stops. The zero
// Target is no target: recovery replays all the archived WAL.
type Target struct {
	// Type is the kind of target; empty for none.
	Type TargetType
	// Value is the target itself, for time, lsn, xid and name.
	Value string
	// Exclusive stops just before the target instead of just after it
	// (time, lsn and xid only).
	Exclusive bool
	// Action is ActionPause, ActionPromote or ActionShutdown; empty leaves
	// pgBackRest's default (pause).
	Action string
	// Timeline is the timeline to recover along: "current", "latest" or a
	// timeline number; empty leaves PostgreSQL's default (latest).
	Timeline string
}

var (
	lsnValue  = regexp.MustCompile(`^[0-9A-Fa-f]{1,8}/[0-9A-Fa-f]{1,8}$`)
	xidValue  = regexp.MustCompile(`^[0-9]+$`)
	timeValue = regexp.MustCompile(`^[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?( ?([+-][0-9]{2}(:?[0-9]{2})?|Z|UTC|GMT))?$`)
)

// Check reports a target pgBackRest or PostgreSQL would refuse.
func (t Target) Check() error {
	switch t.Type {
	case "":
		if t.Value != "" || t.Exclusive || t.Action != "" {
			return errors.New("a target value, exclusive or action needs a target type")
		}
	case TargetImmediate:
		if t.Value != "" {
			return errors.New("an immediate target takes no value")
		}
		if t.Exclusive {
			return errors.New("an immediate target cannot be exclusive")
		}
	case TargetTime:
		if !timeValue.MatchString(t.Value) {
			return fmt.Errorf("time target %q is not YYYY-MM-DD HH:MM:SS[.fraction][+TZ]", t.Value)
		}
	case TargetLSN:
		if !lsnValue.MatchString(t.Value) {
			return fmt.Errorf("lsn target %q is not a WAL location such as 0/3000060", t.Value)
		}
	case TargetXID:
		if !xidValue.MatchString(t.Value) {
			return fmt.Errorf("xid target %q is not a transaction id", t.Value)
		}
	case TargetName:
		if strings.TrimSpace(t.Value) == "" {
			return errors.New("a name target needs the restore point's name")
		}
		if t.Exclusive {
			return errors.New("a name target cannot be exclusive")
		}
	default:
		return fmt.Errorf("target type %q is not one of immediate, time, lsn, xid, name", t.Type)
	}
	switch t.Action {
	case "", ActionPause, ActionPromote, ActionShutdown:
	default:
		return fmt.Errorf("target action %q is not one of pause, promote, shutdown", t.Action)
	}
	if tl := t.Timeline; tl != "" && tl != "current" && tl != "latest" {
		if n, err := strconv.ParseUint(tl, 10, 32); err != nil || n == 0 {
			return fmt.Errorf("target timeline %q is not current, latest or a timeline number", tl)
		}
	}
	return nil
}

// Restore is one `pgbackrest restore` into a data directory.
type Restore struct {
	// Config is the section: stanza, executable, repository, options.
	Config Config
	// DataDir is the directory restored into (--pg1-path), absolute.
	DataDir string
	// Standby restores a standby (--type=standby): standby.signal and a
	// restore_command that fetches WAL from the repository. It excludes a
	// Target other than its Timeline.
	Standby bool
	// Target is where recovery stops, for a new cluster restored to a
	// point in time.
	Target Target
	// Delta rewrites only the files that differ from the backup (--delta);
	// DataDir then holds an old copy of the cluster.
	Delta bool
}

// Console logging the restore asks for: detail has a line per restored
// file, with the share of the backup done so far; everything goes to
// stdout so that the lines stay in order.
var consoleArgs = []string{"--log-level-console=detail", "--log-level-stderr=off"}

// Args returns pgbackrest's arguments for the restore, the executable
// excluded, or an error naming what makes no sense.
func (r Restore) Args() ([]string, error) {
	c := r.Config
	switch {
	case strings.TrimSpace(c.Stanza) == "":
		return nil, errors.New("pgbackrest restore: no stanza")
	case !strings.HasPrefix(r.DataDir, "/"):
		return nil, fmt.Errorf("pgbackrest restore: data directory %q is not an absolute path", r.DataDir)
	}
	if err := r.Target.Check(); err != nil {
		return nil, fmt.Errorf("pgbackrest restore: %w", err)
	}
	if r.Standby && (r.Target.Type != "" || r.Target.Action != "" || r.Target.Exclusive) {
		return nil, errors.New("pgbackrest restore: a standby follows the cluster and takes no recovery target")
	}
	args := []string{"--stanza=" + c.Stanza, "--pg1-path=" + r.DataDir}
	if c.ConfigFile != "" {
		args = append(args, "--config="+c.ConfigFile)
	}
	if c.Repo > 0 {
		args = append(args, "--repo="+strconv.Itoa(c.Repo))
	}
	if c.RepoPath != "" {
		args = append(args, fmt.Sprintf("--repo%d-path=%s", c.repoIndex(), c.RepoPath))
	}
	if c.ProcessMax > 0 {
		args = append(args, "--process-max="+strconv.Itoa(c.ProcessMax))
	}
	switch {
	case r.Standby:
		args = append(args, "--type=standby")
	case r.Target.Type != "":
		args = append(args, "--type="+string(r.Target.Type))
		if r.Target.Value != "" {
			args = append(args, "--target="+r.Target.Value)
		}
		if r.Target.Exclusive {
			args = append(args, "--target-exclusive")
		}
		if r.Target.Action != "" {
			args = append(args, "--target-action="+r.Target.Action)
		}
	}
	if r.Target.Timeline != "" {
		args = append(args, "--target-timeline="+r.Target.Timeline)
	}
	if r.Delta {
		args = append(args, "--delta")
	}
	args = append(args, consoleArgs...)
	args = append(args, c.Options.Args()...)
	return append(args, "restore"), nil
}

// problemLines is how many lines of pgBackRest's warnings and errors a
// failure quotes at most.
const problemLines = 12

// Run runs the restore with env as pgbackrest's whole environment,
// reporting its output to progress (when not nil) and logger. A cancelled
// ctx kills pgbackrest and every process it started (replica.RunCommand)
// and returns an error matching ctx.Err(). A failure is explained in a
// sentence naming the stanza and the repository, wrapping
// ErrStanzaNotFound, ErrNoBackup or ErrRepoUnreachable when pgBackRest's
// output says so. Run leaves the data directory to the caller: after a
// failure it holds a partial restore that PostgreSQL refuses to start
// (pgBackRest writes global/pg_control last).
func (r Restore) Run(ctx context.Context, logger hclog.Logger, env []string, progress func(replica.Progress)) error {
	if progress == nil {
		progress = func(replica.Progress) {}
	}
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	args, err := r.Args()
	if err != nil {
		return err
	}
	cmd := exec.Command(r.Config.Command, args...)
	cmd.Env = env
	logger.Info("running pgbackrest restore", "stanza", r.Config.Stanza, "args", strings.Join(args, " "))
	var (
		problems []string
		// block is the level of the last line with one: continuation
		// lines belong to it.
		block   string
		lastPct = replica.PercentUnknown
	)
	err = replica.RunCommand(ctx, cmd, func(line string) {
		if p, ok := ParseProgress(line); ok {
			logger.Trace("pgbackrest", "line", line)
			block = "DETAIL"
			// A line per file: report each new percent only.
			if p.Percent != lastPct {
				lastPct = p.Percent
				progress(p)
			}
			return
		}
		if level := lineLevel(line); level != "" {
			block = level
			line = stripPrefix(line)
		}
		switch block {
		case "ERROR", "WARN":
			problems = appendCapped(problems, strings.TrimSpace(line))
			logger.Warn("pgbackrest", "line", line)
		case "DETAIL", "DEBUG", "TRACE":
			// Directories created, files checked: too many to report.
			logger.Debug("pgbackrest", "line", line)
			return
		default:
			logger.Info("pgbackrest", "line", line)
		}
		progress(replica.Progress{Message: line, Percent: replica.PercentUnknown})
	})
	if err == nil {
		logger.Info("pgbackrest restore completed", "stanza", r.Config.Stanza)
		return nil
	}
	if ctx.Err() != nil {
		return fmt.Errorf("pgbackrest restore of stanza %q: %w", r.Config.Stanza, err)
	}
	return r.explain(err, problems)
}

// logLine matches the level of a pgBackRest console line, with or without
// the time stamp: "2026-12-08 00:36:40.531 P00   WARN: ...", "ERROR: ...".
var logLine = regexp.MustCompile(`^(?:[0-9-]+ [0-9:.]+ )?(?:P[0-9]+ +)?(ERROR|WARN|INFO|DETAIL|DEBUG|TRACE): `)

// lineLevel is the log level a line starts with, or "" for a
// continuation line or other output.
func lineLevel(line string) string {
	if m := logLine.FindStringSubmatch(line); m != nil {
		return m[1]
	}
	return ""
}

// stripPrefix drops the time stamp and process of a log line, keeping the
// level.
func stripPrefix(line string) string {
	if loc := logLine.FindStringSubmatchIndex(line); loc != nil {
		return line[loc[2]:]
	}
	return line
}

func appendCapped(lines []string, line string) []string {
	if len(lines) >= problemLines || line == "" {
		return lines
	}
	return append(lines, line)
}

// explain turns a failed run into a sentence naming the stanza and the
// repository.
func (r Restore) explain(runErr error, problems []string) error {
	c := r.Config
	repo := c.RepoDescription()
	said := strings.Join(problems, " | ")
	has := func(s ...string) bool {
		for _, x := range s {
			if strings.Contains(said, x) {
				return true
			}
		}
		return false
	}
	var exitErr *exec.ExitError
	if !errors.As(runErr, &exitErr) {
		if errors.Is(runErr, exec.ErrNotFound) || errors.Is(runErr, os.ErrNotExist) {
			return fmt.Errorf("pgbackrest executable %q not found (install pgBackRest, or set the command key): %w", c.Command, runErr)
		}
		return fmt.Errorf("running pgbackrest restore of stanza %q from %s: %w", c.Stanza, repo, runErr)
	}
	code := exitErr.ExitCode()
	switch {
	case has("terminated unexpectedly", "HostConnectError", "unable to connect", "unable to get address", "timeout"):
		return fmt.Errorf("cannot reach %s to restore stanza %q: %s: %w", repo, c.Stanza, said, ErrRepoUnreachable)
	case has("has a stanza-create been performed", "backup.info' or '") && has("FileMissingError", "missing file"):
		if p := r.localRepoPath(); p != "" {
			if _, err := os.Stat(p); err != nil {
				return fmt.Errorf("cannot reach %s to restore stanza %q: %v: %w", repo, c.Stanza, err, ErrRepoUnreachable)
			}
		}
		return fmt.Errorf("stanza %q does not exist in %s: pgBackRest found no backup.info there (has stanza-create run, and are the stanza and repository settings right?): %w", c.Stanza, repo, ErrStanzaNotFound)
	case has("Permission denied", "permission denied"):
		return fmt.Errorf("pgbackrest may not read %s to restore stanza %q (it runs as the member's OS user): %s", repo, c.Stanza, said)
	case has("no backup set found to restore"):
		return fmt.Errorf("no backup of stanza %q to restore in %s (run pgbackrest backup first): %w", c.Stanza, repo, ErrNoBackup)
	case has("unable to restore while PostgreSQL is running"):
		return fmt.Errorf("pgbackrest refuses to restore stanza %q into %s: PostgreSQL is running there", c.Stanza, r.DataDir)
	case said == "":
		return fmt.Errorf("pgbackrest restore of stanza %q from %s failed with exit status %d and said nothing", c.Stanza, repo, code)
	}
	return fmt.Errorf("pgbackrest restore of stanza %q from %s failed (exit status %d): %s", c.Stanza, repo, code, said)
}

// localRepoPath is the repository's path when it is a local one (no
// repository host, posix or cifs), else "".
func (r Restore) localRepoPath() string {
	c := r.Config
	idx := c.repoIndex()
	if h, _ := c.Options.Get(fmt.Sprintf("repo%d-host", idx)); h != "" {
		return ""
	}
	if t, ok := c.Options.Get(fmt.Sprintf("repo%d-type", idx)); ok && t != "posix" && t != "cifs" {
		return ""
	}
	if c.RepoPath != "" {
		return c.RepoPath
	}
	p, _ := c.Options.Get(fmt.Sprintf("repo%d-path", idx))
	return p
}
