package bootstrap

import (
	"context"
	"fmt"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Capability keys a bootstrap plugin announces in its identity.
const (
	// CapMethods is the comma-separated list of the bootstrap methods the
	// plugin serves ("pgbackrest"): the names users give in
	// bootstrap.method, each configured by its [bootstrap.<method>]
	// section.
	CapMethods = "bootstrap.methods"
	// CapTargets is the comma-separated list of the methods, among
	// CapMethods, that restore to a recovery target (Request.Target). The
	// host refuses a configured target for any other method before it
	// calls the plugin, and such a method refuses a Request with a Target.
	CapTargets = "bootstrap.targets"
)

// PercentUnknown is Progress.Percent when the step has no measure.
const PercentUnknown = -1

// Creator is what a bootstrap plugin implements. Every method takes the
// caller's context first.
type Creator interface {
	// Validate checks the configuration section of one of the plugin's
	// methods without touching anything, and returns a *sdk.ConfigError
	// listing every problem with its key path inside the section (an
	// unknown key is a problem, and so is input that is not a JSON table).
	// An unknown method is ErrUnknownMethod.
	Validate(ctx context.Context, method string, config []byte) error

	// CreateCluster fills req.DataDir with the data directory of a new
	// cluster (restored from a backup, cloned from another cluster, ...),
	// calling progress (when not nil) from one goroutine at a time with
	// what it is doing. The contract:
	//
	//   - Before touching anything it refuses an unknown method
	//     (ErrUnknownMethod), a section Validate refuses (the same
	//     *sdk.ConfigError), a req.Target for a method not listed under
	//     CapTargets (ErrInvalidRequest), and a req.DataDir that exists and
	//     is not an empty directory (ErrDataDirNotEmpty, as
	//     replica.ClaimDataDir reports it). Removing an old data directory
	//     is the host's decision and job. A request that breaks
	//     Request.Check is refused by the SDK on both sides of the wire: a
	//     plugin served with Serve never sees one.
	//   - req.Target, when set, is the point the new cluster is to recover
	//     to; the method uses it to choose what to restore (the newest
	//     backup that ends before the target). Reaching it is PostgreSQL's
	//     job, with the settings the host writes.
	//   - On success the directory holds a data directory PostgreSQL can
	//     start from: PG_VERSION, global/pg_control, mode 0700 or 0750, and
	//     no recovery configuration of its own: no recovery.signal,
	//     standby.signal or recovery.conf, and no recovery parameter
	//     (restore_command, recovery_target_*, primary_conninfo, ...) in
	//     postgresql.auto.conf. A tool that writes them (pgbackrest restore
	//     does) has them removed by the plugin: RemoveRecoveryConfig does
	//     it. The Result carries what only the plugin knows, the
	//     restore_command that fetches the archived WAL. The host owns the
	//     recovery settings: it starts the new cluster in archive recovery
	//     (recovery.signal) with RecoveryParameters(req.Target, result)
	//     when they are not empty, as an ordinary start otherwise.
	//   - On failure the data directory is left as it was found: absent or
	//     empty (pg_wal and tablespace link targets emptied too;
	//     replica.DataDir.Reset does it). Only a plugin process that dies
	//     mid-way leaves partial data; the host then gets a transport error
	//     and must remove the directory before trying again.
	//   - When ctx ends (cancelled, or its deadline passed), every process
	//     the plugin started for the creation is killed (replica.RunCommand
	//     does it for a tool), the partial data is removed as on failure,
	//     and the call returns an error matching ctx.Err() (or nil and the
	//     Result if the creation had completed). It returns only once that
	//     is done, so the host may reuse the directory at once. With ctx
	//     already ended it starts nothing.
	//   - Passwords never travel in the request: a tool's secrets are in
	//     its own files, named in the section or in req.Env. The Result
	//     holds none either: the restore_command lands in postgresql.conf.
	CreateCluster(ctx context.Context, req Request, progress func(Progress)) (Result, error)
}

// Request asks for one new cluster.
type Request struct {
	// Method is the bootstrap method to use, one of the plugin's
	// CapMethods.
	Method string
	// Scope is the cluster name.
	Scope string
	// Member is the name of the member the cluster is created on.
	Member string
	// DataDir is the absolute path of the directory to fill.
	DataDir string
	// Config is the JSON of the method's section ([bootstrap.<method>]).
	Config []byte
	// BinDir is the absolute path of PostgreSQL's executables; empty
	// means PATH.
	BinDir string
	// Env is added to the environment of the tools the plugin runs.
	Env map[string]string
	// Target is the recovery target; nil recovers as far as the method's
	// data goes (the end of the WAL archive, for a backup).
	Target *Target
}

// Check reports a request the contract does not allow: no method, a data
// or bin directory that is not an absolute path, an environment variable
// that cannot be set, an invalid Target. The error wraps
// ErrInvalidRequest and names every problem.
func (r Request) Check() error {
	var problems []string
	if r.Method == "" {
		problems = append(problems, "no method")
	}
	switch {
	case r.DataDir == "":
		problems = append(problems, "no data directory")
	case !filepath.IsAbs(r.DataDir):
		problems = append(problems, fmt.Sprintf("data directory %q is not an absolute path", r.DataDir))
	}
	if r.BinDir != "" && !filepath.IsAbs(r.BinDir) {
		problems = append(problems, fmt.Sprintf("bin directory %q is not an absolute path", r.BinDir))
	}
	for k, v := range r.Env {
		if k == "" || strings.ContainsAny(k, "=\x00") || strings.ContainsRune(v, 0) {
			problems = append(problems, fmt.Sprintf("environment variable %q cannot be set", k))
		}
	}
	if r.Target != nil {
		problems = append(problems, r.Target.problems()...)
	}
	if len(problems) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %s", ErrInvalidRequest, strings.Join(problems, "; "))
}

// Recovery target actions: what PostgreSQL does once it reaches the
// target (recovery_target_action).
const (
	ActionPromote  = "promote"
	ActionPause    = "pause"
	ActionShutdown = "shutdown"
)

// Recovery target timelines besides a timeline ID
// (recovery_target_timeline).
const (
	TimelineLatest  = "latest"
	TimelineCurrent = "current"
)

// Limits PostgreSQL puts on a target.
const (
	// maxTargetNameLen is the longest restore point name (MAXFNAMELEN-1).
	maxTargetNameLen = 63
	// firstNormalXID is the lowest transaction ID a transaction gets.
	firstNormalXID = 3
)

var lsnPattern = regexp.MustCompile(`^[0-9A-Fa-f]{1,8}/[0-9A-Fa-f]{1,8}$`)

// Target is the point a new cluster recovers to, as PostgreSQL's
// recovery_target_* settings express it. Exactly one of Immediate, Time,
// LSN, XID and Name is set.
type Target struct {
	// Immediate ends recovery as soon as the data is consistent
	// (recovery_target = 'immediate').
	Immediate bool
	// Time is a commit time to stop at (recovery_target_time). It crosses
	// the wire in RFC 3339 with nanoseconds, keeping its offset;
	// PostgreSQL keeps microseconds.
	Time time.Time
	// LSN is a WAL location such as "0/3000060" (recovery_target_lsn).
	LSN string
	// XID is a transaction ID, with or without its epoch, as txid_current
	// gives it (recovery_target_xid).
	XID uint64
	// Name is a restore point made with pg_create_restore_point
	// (recovery_target_name).
	Name string
	// Exclusive stops just before the target rather than just after it
	// (recovery_target_inclusive = off). Time, LSN and XID only.
	Exclusive bool
	// Action is what PostgreSQL does at the target: ActionPromote (also
	// when empty: a bootstrap ends with a primary), ActionPause or
	// ActionShutdown.
	Action string
	// Timeline is the timeline to recover along: TimelineLatest (also
	// when empty, PostgreSQL's default), TimelineCurrent or a timeline ID
	// in decimal.
	Timeline string
}

// Check reports a target the contract does not allow, naming every
// problem; the error wraps ErrInvalidRequest.
func (t Target) Check() error {
	if problems := t.problems(); len(problems) > 0 {
		return fmt.Errorf("%w: %s", ErrInvalidRequest, strings.Join(problems, "; "))
	}
	return nil
}

func (t Target) problems() []string {
	var problems []string
	add := func(format string, args ...any) {
		problems = append(problems, "recovery target: "+fmt.Sprintf(format, args...))
	}
	var kinds []string
	if t.Immediate {
		kinds = append(kinds, "immediate")
	}
	if !t.Time.IsZero() {
		kinds = append(kinds, "time")
		if y := t.Time.Year(); y < 1 || y > 9999 {
			add("time %s is outside years 1 to 9999", t.Time.UTC().Format(time.DateOnly))
		}
	}
	if t.LSN != "" {
		kinds = append(kinds, "lsn")
		if !lsnPattern.MatchString(t.LSN) {
			add("lsn %q is not a WAL location such as 0/3000060", t.LSN)
		}
	}
	if t.XID != 0 {
		kinds = append(kinds, "xid")
		if uint32(t.XID) < firstNormalXID {
			add("xid %d is not a normal transaction ID", t.XID)
		}
	}
	if t.Name != "" {
		kinds = append(kinds, "name")
		if len(t.Name) > maxTargetNameLen {
			add("name is %d bytes long, PostgreSQL takes at most %d", len(t.Name), maxTargetNameLen)
		}
		if hasControl(t.Name) {
			add("name %q holds a control character", t.Name)
		}
	}
	switch len(kinds) {
	case 0:
		add("none of immediate, time, lsn, xid, name is set")
	case 1:
		if t.Exclusive && (t.Immediate || t.Name != "") {
			add("exclusive applies to a time, lsn or xid target, not to %s", kinds[0])
		}
	default:
		add("more than one of immediate, time, lsn, xid, name is set (%s)", strings.Join(kinds, ", "))
	}
	switch t.Action {
	case "", ActionPromote, ActionPause, ActionShutdown:
	default:
		add("action %q is not one of %s, %s, %s", t.Action, ActionPromote, ActionPause, ActionShutdown)
	}
	switch t.Timeline {
	case "", TimelineLatest, TimelineCurrent:
	default:
		if n, err := strconv.ParseUint(t.Timeline, 10, 32); err != nil || n == 0 {
			add("timeline %q is not %s, %s or a timeline ID", t.Timeline, TimelineLatest, TimelineCurrent)
		}
	}
	return problems
}

// pgTimeLayout is recovery_target_time's form: microseconds, as
// PostgreSQL keeps them, and a numeric offset.
const pgTimeLayout = "2006-01-02 15:04:05.999999-07:00"

// Parameters returns the PostgreSQL settings that express the target:
// one recovery_target_* setting, recovery_target_inclusive when
// Exclusive, recovery_target_action (promote when Action is empty) and
// recovery_target_timeline when Timeline is set. Values are unquoted. The
// target must pass Check.
func (t Target) Parameters() map[string]string {
	p := map[string]string{}
	switch {
	case t.Immediate:
		p["recovery_target"] = "immediate"
	case !t.Time.IsZero():
		p["recovery_target_time"] = t.Time.Format(pgTimeLayout)
	case t.LSN != "":
		p["recovery_target_lsn"] = t.LSN
	case t.XID != 0:
		p["recovery_target_xid"] = strconv.FormatUint(t.XID, 10)
	case t.Name != "":
		p["recovery_target_name"] = t.Name
	}
	if t.Exclusive {
		p["recovery_target_inclusive"] = "off"
	}
	p["recovery_target_action"] = ActionPromote
	if t.Action != "" {
		p["recovery_target_action"] = t.Action
	}
	if t.Timeline != "" {
		p["recovery_target_timeline"] = t.Timeline
	}
	return p
}

// Result is what a successful CreateCluster tells the host about the
// first start of the new cluster.
type Result struct {
	// RestoreCommand is the restore_command PostgreSQL needs to fetch
	// archived WAL (with %f and %p); empty when the data directory holds
	// all the WAL its recovery needs (a backup taken with its WAL, an
	// initialised cluster).
	RestoreCommand string
}

// Check reports a result the host cannot use: a restore_command without
// %f or %p, or with a control character (it is written into
// postgresql.conf). The error wraps ErrInvalidResult.
func (r Result) Check() error {
	if r.RestoreCommand == "" {
		return nil
	}
	var problems []string
	if hasControl(r.RestoreCommand) {
		problems = append(problems, "it holds a control character")
	}
	f, p := placeholders(r.RestoreCommand)
	if !f {
		problems = append(problems, "it has no %f (the file to fetch)")
	}
	if !p {
		problems = append(problems, "it has no %p (where to put it)")
	}
	if len(problems) == 0 {
		return nil
	}
	return fmt.Errorf("%w: restore_command %q: %s", ErrInvalidResult, r.RestoreCommand, strings.Join(problems, "; "))
}

// placeholders reports whether a restore_command uses %f and %p (%% is a
// literal percent sign).
func placeholders(cmd string) (f, p bool) {
	for i := 0; i+1 < len(cmd); i++ {
		if cmd[i] != '%' {
			continue
		}
		switch cmd[i+1] {
		case 'f':
			f = true
		case 'p':
			p = true
		}
		i++
	}
	return f, p
}

func hasControl(s string) bool {
	return strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f })
}

// RecoveryParameters returns the recovery settings of a new cluster's
// first start: restore_command from the result and the target's
// Parameters. Empty means an ordinary start (crash recovery from the WAL
// in pg_wal at most); otherwise the host starts the cluster in archive
// recovery (recovery.signal) with them, and PostgreSQL promotes it at the
// target, or at the end of the archive when there is none.
func RecoveryParameters(target *Target, res Result) map[string]string {
	p := map[string]string{}
	if target != nil {
		p = target.Parameters()
	}
	if res.RestoreCommand != "" {
		p["restore_command"] = res.RestoreCommand
	}
	return p
}

// Progress is one report of a running creation.
type Progress struct {
	// Message is a line of the tool's output or a step, for the log.
	Message string
	// Percent is 0..100, or PercentUnknown.
	Percent int
	// DoneBytes and TotalBytes count the data written when known (0
	// otherwise).
	DoneBytes  int64
	TotalBytes int64
}

// Methods returns the methods announced under CapMethods in an identity's
// capabilities.
func Methods(capabilities map[string]string) []string {
	return list(capabilities[CapMethods])
}

// TargetMethods returns the methods announced under CapTargets: those
// that restore to a recovery target.
func TargetMethods(capabilities map[string]string) []string {
	return list(capabilities[CapTargets])
}

func list(s string) []string {
	var out []string
	for _, m := range strings.Split(s, ",") {
		if m = strings.TrimSpace(m); m != "" {
			out = append(out, m)
		}
	}
	return out
}
