package postgres

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Names of the PostgreSQL binaries the package runs; Config.BinName maps
// them to other file names.
const (
	BinPgCtl         = "pg_ctl"
	BinInitdb        = "initdb"
	BinPgControlData = "pg_controldata"
	BinPgBasebackup  = "pg_basebackup"
	BinPostgres      = "postgres"
	BinPgIsready     = "pg_isready"
	BinPgRewind      = "pg_rewind"
	BinPgWaldump     = "pg_waldump"
)

// DefaultPgCtlTimeout is Patroni's pg_ctl_timeout: how long a start, stop
// or promote may take when the caller gives no timeout. A primary with a
// big shared_buffers can take tens of seconds to checkpoint at shutdown.
const DefaultPgCtlTimeout = 60 * time.Second

// Config is what the package needs to know about the local PostgreSQL. The
// agent maps its own configuration onto it; New validates and normalizes
// it.
type Config struct {
	// Scope is the cluster name; it becomes cluster_name.
	Scope string
	// Name is this member's name: application_name of its replication
	// connection and the base of its replication slot name.
	Name string
	// DataDir is the data directory (PGDATA). Made absolute by New.
	DataDir string
	// BinDir holds the PostgreSQL binaries; empty means $PATH.
	BinDir string
	// BinName overrides binary file names, keyed by the Bin* constants.
	BinName map[string]string
	// Listen is "host[,host2...]:port": listen_addresses and port.
	Listen string
	// ConnectAddress is "host:port" other members and clients use to reach
	// this server; it goes into the member's conn_url. Empty means the
	// first listen host when it is not a wildcard.
	ConnectAddress string
	// Superuser is used for the agent's own connection, pg_rewind when no
	// Rewind user is set, and initdb's superuser.
	Superuser Credentials
	// Replication is the role replicas stream with (created at bootstrap).
	Replication Credentials
	// Rewind is the role pg_rewind connects as; empty Username means the
	// superuser.
	Rewind Credentials
	// Parameters are the GUCs, already merged (local over dynamic). The
	// enforced ones are corrected (see EnforcedParameters).
	Parameters map[string]string
	// RecoveryConf holds extra recovery settings for a standby
	// (restore_command, recovery_min_apply_delay, ...).
	RecoveryConf map[string]string
	// PgHBA lines; empty keeps the pg_hba.conf in the data directory.
	PgHBA []string
	// PgIdent lines; empty keeps pg_ident.conf.
	PgIdent []string
	// Pgpass is the path of the pgpass file the agent writes; empty means
	// a file beside the data directory (or in the temp dir when that
	// parent is not writable).
	Pgpass string
	// PgCtlTimeout bounds start, stop and promote when the caller passes
	// no timeout; 0 means DefaultPgCtlTimeout.
	PgCtlTimeout time.Duration
	// UsePgRewind allows pg_rewind.
	UsePgRewind bool
	// RemoveDataDirectoryOnRewindFailure is carried for the HA core.
	RemoveDataDirectoryOnRewindFailure bool
	// InitdbOptions are extra initdb options, "--name" or "--name=value".
	InitdbOptions []string
	// UseSlots makes MemberSlot return this member's slot name.
	UseSlots bool
	// LogDir receives postmaster.log (PostgreSQL's stderr); empty means
	// <DataDir>/log.
	LogDir string
}

// Credentials are a role name, its password and libpq TLS/GSS options
// (sslmode, sslcert, sslkey, sslrootcert, sslcrl, sslcrldir, sslpassword,
// sslnegotiation, gssencmode, channel_binding). String redacts the
// password.
type Credentials struct {
	Username string
	Password string
	SSL      map[string]string
}

// libpqOptions are the connection options Credentials.SSL may hold.
var libpqOptions = map[string]bool{
	"sslmode": true, "sslcert": true, "sslkey": true, "sslrootcert": true, "sslcrl": true,
	"sslcrldir": true, "sslpassword": true, "sslnegotiation": true, "gssencmode": true,
	"channel_binding": true, "sslcompression": true, "sslsni": true, "ssl_min_protocol_version": true,
	"ssl_max_protocol_version": true, "krbsrvname": true, "gsslib": true,
}

// String shows the user and options, never the password.
func (c Credentials) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "user=%s", c.Username)
	if c.Password != "" {
		b.WriteString(" password=<redacted>")
	}
	for _, k := range sortedKeys(c.SSL) {
		v := c.SSL[k]
		if k == "sslpassword" {
			v = "<redacted>"
		}
		fmt.Fprintf(&b, " %s=%s", k, v)
	}
	return b.String()
}

// GoString redacts as String does, for %#v.
func (c Credentials) GoString() string { return "postgres.Credentials{" + c.String() + "}" }

// forbiddenInitdb are initdb options the agent sets itself or that make
// no sense for it (Patroni's list plus the ones it passes).
var forbiddenInitdb = map[string]string{
	"pgdata":    "the agent passes the data directory",
	"D":         "the agent passes the data directory",
	"nosync":    "an unsynced cluster may be corrupt after a crash",
	"no-sync":   "an unsynced cluster may be corrupt after a crash",
	"N":         "an unsynced cluster may be corrupt after a crash",
	"pwfile":    "the agent passes the superuser password",
	"pwprompt":  "the agent passes the superuser password",
	"W":         "the agent passes the superuser password",
	"sync-only": "it does not create a cluster",
	"S":         "it does not create a cluster",
	"version":   "it does not create a cluster",
	"V":         "it does not create a cluster",
	"username":  "the superuser comes from authentication.superuser.username",
	"U":         "the superuser comes from authentication.superuser.username",
}

var initdbOptionRE = regexp.MustCompile(`^--([A-Za-z][A-Za-z0-9-]*)(=(.*))?$`)

// ValidateInitdbOptions checks the user's initdb options: each is
// "--name" or "--name=value" and none is one the agent controls.
func ValidateInitdbOptions(opts []string) error {
	for i, o := range opts {
		m := initdbOptionRE.FindStringSubmatch(o)
		if m == nil {
			return fmt.Errorf("initdb option %d %q: want --name or --name=value", i, o)
		}
		if why, bad := forbiddenInitdb[m[1]]; bad {
			return fmt.Errorf("initdb option %q is not allowed: %s", o, why)
		}
	}
	return nil
}

// normalize fills defaults and checks the config; the result is what the
// rest of the package relies on.
func (c Config) normalize() (Config, listenAddr, error) {
	var la listenAddr
	if c.Scope == "" {
		return c, la, fmt.Errorf("postgres config: scope is empty")
	}
	if c.Name == "" {
		return c, la, fmt.Errorf("postgres config: member name is empty")
	}
	if c.DataDir == "" {
		return c, la, fmt.Errorf("postgres config: data_dir is empty")
	}
	dd, err := filepath.Abs(c.DataDir)
	if err != nil {
		return c, la, fmt.Errorf("postgres config: data_dir %q: %w", c.DataDir, err)
	}
	if dd == string(filepath.Separator) {
		return c, la, fmt.Errorf("postgres config: data_dir cannot be the root directory")
	}
	c.DataDir = dd
	la, err = parseListen(c.Listen)
	if err != nil {
		return c, la, fmt.Errorf("postgres config: %w", err)
	}
	if c.ConnectAddress == "" {
		if isWildcard(la.hosts[0]) {
			return c, la, fmt.Errorf("postgres config: connect_address is empty and listen %q has a wildcard first host", c.Listen)
		}
		c.ConnectAddress = net.JoinHostPort(la.hosts[0], strconv.Itoa(la.port))
	}
	if _, port, err := net.SplitHostPort(c.ConnectAddress); err != nil {
		return c, la, fmt.Errorf("postgres config: connect_address %q: %w", c.ConnectAddress, err)
	} else if n, err := strconv.Atoi(port); err != nil || n <= 0 || n > 65535 {
		return c, la, fmt.Errorf("postgres config: connect_address %q: bad port", c.ConnectAddress)
	}
	if c.Superuser.Username == "" {
		c.Superuser.Username = "postgres"
	}
	if c.Replication.Username == "" {
		return c, la, fmt.Errorf("postgres config: authentication.replication.username is empty")
	}
	for what, cr := range map[string]Credentials{"superuser": c.Superuser, "replication": c.Replication, "rewind": c.Rewind} {
		for k := range cr.SSL {
			if !libpqOptions[k] {
				return c, la, fmt.Errorf("postgres config: authentication.%s.%s is not a libpq connection option", what, k)
			}
		}
	}
	if c.PgCtlTimeout <= 0 {
		c.PgCtlTimeout = DefaultPgCtlTimeout
	}
	if err := ValidateInitdbOptions(c.InitdbOptions); err != nil {
		return c, la, fmt.Errorf("postgres config: %w", err)
	}
	for k := range c.BinName {
		switch k {
		case BinPgCtl, BinInitdb, BinPgControlData, BinPgBasebackup, BinPostgres, BinPgIsready, BinPgRewind, BinPgWaldump:
		default:
			return c, la, fmt.Errorf("postgres config: bin_name.%s is not a known binary", k)
		}
	}
	params := make(map[string]string, len(c.Parameters))
	for k, v := range c.Parameters {
		params[strings.ToLower(strings.TrimSpace(k))] = v
	}
	c.Parameters = params
	if c.Pgpass == "" {
		c.Pgpass = defaultPgpass(c.DataDir)
	} else if c.Pgpass, err = filepath.Abs(c.Pgpass); err != nil {
		return c, la, fmt.Errorf("postgres config: pgpass: %w", err)
	}
	if c.LogDir == "" {
		c.LogDir = filepath.Join(c.DataDir, "log")
	} else if c.LogDir, err = filepath.Abs(c.LogDir); err != nil {
		return c, la, fmt.Errorf("postgres config: log dir: %w", err)
	}
	return c, la, nil
}

// defaultPgpass is a file beside the data directory, named after it, or in
// the temp dir when the parent is not writable by us.
func defaultPgpass(dataDir string) string {
	parent := filepath.Dir(dataDir)
	name := "." + filepath.Base(dataDir) + ".custos-pgpass"
	if dirWritable(parent) {
		return filepath.Join(parent, name)
	}
	return filepath.Join(os.TempDir(), fmt.Sprintf("custos-pgpass-%d-%s", os.Getuid(), strings.ReplaceAll(strings.Trim(dataDir, "/"), "/", "_")))
}

// listenAddr is the parsed postgresql.listen.
type listenAddr struct {
	hosts []string
	port  int
}

// parseListen splits "h1,h2:port" at the last colon, as Patroni does.
func parseListen(s string) (listenAddr, error) {
	i := strings.LastIndexByte(s, ':')
	if i < 0 {
		return listenAddr{}, fmt.Errorf("listen %q: want host[,host...]:port", s)
	}
	port, err := strconv.Atoi(s[i+1:])
	if err != nil || port <= 0 || port > 65535 {
		return listenAddr{}, fmt.Errorf("listen %q: bad port", s)
	}
	var hosts []string
	for _, h := range strings.Split(s[:i], ",") {
		h = strings.Trim(strings.TrimSpace(h), "[]")
		if h != "" {
			hosts = append(hosts, h)
		}
	}
	if len(hosts) == 0 {
		return listenAddr{}, fmt.Errorf("listen %q: no host", s)
	}
	return listenAddr{hosts: hosts, port: port}, nil
}

func isWildcard(h string) bool { return h == "*" || h == "0.0.0.0" || h == "::" }

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
