package replica

import (
	"context"
	"strconv"
	"strings"
)

// Capability keys a replica plugin announces in its identity.
const (
	// CapMethods is the comma-separated list of the replica methods the
	// plugin serves ("basebackup").
	CapMethods = "replica.methods"
	// CapNoLeader is "true" when the plugin's methods can create a replica
	// without a member to copy from (from a backup, say): the host then
	// calls it with a nil Request.Source when no leader is running. It is
	// Patroni's no_leader setting of a custom replica method.
	CapNoLeader = "replica.no_leader"
	// CapKeepData is "true" when the plugin's methods can restore into a
	// data directory that still holds an old copy, rewriting only what
	// differs (pgBackRest's --delta): the host may then set
	// Request.KeepData and call with a non-empty data directory instead of
	// removing it first. It is Patroni's keep_data setting of a custom
	// replica method. PostgreSQL must not be running in the directory; on
	// failure or cancellation the directory is emptied, as the old copy
	// may be half rewritten.
	CapKeepData = "replica.keep_data"
)

// RoleReplica is the only role replicas are created for today.
const RoleReplica = "replica"

// PercentUnknown is Progress.Percent when the step has no measure.
const PercentUnknown = -1

// Creator is what a replica plugin implements. Every method takes the
// caller's context first.
type Creator interface {
	// Validate checks the configuration section of one of the plugin's
	// methods without touching anything, and returns a *sdk.ConfigError
	// listing every problem with its key path inside the section (an
	// unknown key is a problem). An unknown method is ErrUnknownMethod.
	Validate(ctx context.Context, method string, config []byte) error

	// CreateReplica fills req.DataDir with a copy of a PostgreSQL data
	// directory that can start as a standby of the cluster, calling
	// progress (when not nil) from one goroutine at a time with what it is
	// doing. The contract:
	//
	//   - req.DataDir must be absent or an empty directory; otherwise the
	//     call fails with ErrDataDirNotEmpty and touches nothing. Removing
	//     an old data directory is the host's decision and job. The one
	//     exception is req.KeepData to a plugin announcing CapKeepData.
	//   - req.Source nil means there is no member to copy from: a method
	//     that needs one fails with ErrNoSource.
	//   - On success the directory holds PG_VERSION, global/pg_control and
	//     what PostgreSQL needs to start in recovery once the host adds its
	//     recovery settings (standby.signal, primary_conninfo).
	//   - On failure the data directory is left as it was found: absent or
	//     empty (tablespace and pg_wal link targets emptied too). Only a
	//     plugin process that dies mid-copy leaves a partial copy; the host
	//     then gets a transport error and must remove the directory before
	//     trying again.
	//   - When ctx is cancelled, every process the plugin started for the
	//     copy is killed, the partial copy is removed as on failure, and the
	//     call returns an error matching ctx.Err() (or nil if the copy had
	//     completed). It returns only once that is done, so the host may
	//     reuse the directory at once.
	//   - Passwords never travel in the request: req.Source.PassFile names a
	//     pgpass file, handed to the tools as PGPASSFILE.
	CreateReplica(ctx context.Context, req Request, progress func(Progress)) error
}

// Request asks for one replica.
type Request struct {
	// Method is the replica method to use, one of the plugin's CapMethods.
	Method string
	// Scope is the cluster name.
	Scope string
	// Member is the name of the member the replica is created for.
	Member string
	// DataDir is the directory to fill.
	DataDir string
	// Source is the running member to copy from; nil when there is none.
	Source *Source
	// Role is RoleReplica.
	Role string
	// Config is the JSON of the method's section ([postgresql.<method>]).
	Config []byte
	// BinDir holds PostgreSQL's executables; empty means PATH.
	BinDir string
	// Env is added to the environment of the tools the plugin runs.
	Env map[string]string
	// KeepData asks to restore into DataDir even when it holds an old
	// copy (see CapKeepData). A plugin that does not announce CapKeepData
	// ignores it, and refuses a non-empty directory as usual.
	KeepData bool
}

// Source is the member a replica is copied from and how to reach it.
type Source struct {
	// Member is the source member's name (empty for a remote primary).
	Member string
	// ConnString is the libpq connection string the host built, without a
	// password; when empty, DSN builds one from Host, Port, DBName, User.
	ConnString string
	Host       string
	Port       int
	DBName     string
	User       string
	// PassFile is a pgpass file with the password for the connection.
	PassFile string
}

// DSN returns the libpq connection string to reach the source:
// ConnString when set, else one built from the parts.
func (s Source) DSN() string {
	if s.ConnString != "" {
		return s.ConnString
	}
	var parts []string
	add := func(k, v string) {
		if v != "" {
			parts = append(parts, k+"="+quoteConnValue(v))
		}
	}
	add("host", s.Host)
	if s.Port != 0 {
		add("port", strconv.Itoa(s.Port))
	}
	add("dbname", s.DBName)
	add("user", s.User)
	return strings.Join(parts, " ")
}

// quoteConnValue quotes a libpq keyword value when it needs it.
func quoteConnValue(v string) string {
	if v != "" && !strings.ContainsAny(v, " '\\\t\n\r") {
		return v
	}
	r := strings.NewReplacer(`\`, `\\`, `'`, `\'`)
	return "'" + r.Replace(v) + "'"
}

// Progress is one report of a running copy.
type Progress struct {
	// Message is a line of the tool's output or a step, for the log.
	Message string
	// Percent is 0..100, or PercentUnknown.
	Percent int
	// DoneBytes and TotalBytes count the copy when known (0 otherwise).
	DoneBytes  int64
	TotalBytes int64
}

// Methods returns the methods announced under CapMethods in an identity's
// capabilities.
func Methods(capabilities map[string]string) []string {
	var out []string
	for _, m := range strings.Split(capabilities[CapMethods], ",") {
		if m = strings.TrimSpace(m); m != "" {
			out = append(out, m)
		}
	}
	return out
}
