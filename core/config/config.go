package config

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"time"
)

// Defaults of the local configuration. Most are Patroni's, so a patroni.yml
// carried over behaves the same.
const (
	// DefaultNamespace is Patroni's DCS namespace; keeping it lets custos
	// and Patroni agents share a cluster.
	DefaultNamespace = "/service"
	// DefaultPluginDirName is where plugins live relative to the custos
	// binary, so an unpacked release works without configuration.
	DefaultPluginDirName = "plugins"
	// DefaultBootstrapMethod creates a new cluster with initdb.
	DefaultBootstrapMethod = "initdb"
	// DefaultPGCtlTimeout is how long pg_ctl may take to start or stop
	// PostgreSQL (Patroni's 60 s): enough for crash recovery of a modest
	// instance before the agent gives up waiting.
	DefaultPGCtlTimeout = 60 * time.Second
	// DefaultLogLevel is INFO: one line per HA cycle and every action.
	DefaultLogLevel = "INFO"
	// DefaultLogType is human-readable text.
	DefaultLogType = "plain"
	// DefaultLogFileNum is how many rotated log files are kept (Patroni's 4).
	DefaultLogFileNum = 4
	// DefaultLogFileSize is the size at which a log file rotates (Patroni's
	// 25 MB).
	DefaultLogFileSize Size = 25000000
	// DefaultRequestQueueSize is how many REST API connections are served
	// at once (Patroni's listen backlog of 5): health checks are answered
	// in microseconds, a long queue only hides an overloaded agent.
	DefaultRequestQueueSize = 5
	// DefaultServerTokens shows the full Server header, as Patroni does.
	DefaultServerTokens = "original"
	// DefaultVerifyClient asks no client certificate.
	DefaultVerifyClient = "none"
	// DefaultWatchdogMode uses a watchdog when one is there and goes on
	// without one otherwise.
	DefaultWatchdogMode = WatchdogAutomatic
	// DefaultWatchdogDriver is the Linux watchdog device, as Patroni's
	// default driver.
	DefaultWatchdogDriver = WatchdogDriverDefault
	// DefaultWatchdogDevice is the Linux watchdog device.
	DefaultWatchdogDevice = "/dev/watchdog"
	// DefaultWatchdogSafetyMargin is how long before the leader key expires
	// the watchdog fires (Patroni's 5 s): the node must be reset before
	// another one can take over.
	DefaultWatchdogSafetyMargin = 5 * time.Second
	// WatchdogSafetyMarginHalfTTL is the special safety_margin -1: the
	// watchdog timeout becomes ttl/2.
	WatchdogSafetyMarginHalfTTL = -1 * time.Second
	// DefaultFailoverPriority makes every member an equal candidate.
	DefaultFailoverPriority = 1
	// DefaultSyncPriority makes every member an equal synchronous candidate.
	DefaultSyncPriority = 1
)

// Watchdog modes.
const (
	WatchdogOff       = "off"
	WatchdogAutomatic = "automatic"
	WatchdogRequired  = "required"
)

// Watchdog drivers.
const (
	// WatchdogDriverDefault is the Linux watchdog device (watchdog.device).
	WatchdogDriverDefault = "default"
	// WatchdogDriverProcess is a separate fencing process that kills the
	// postmaster when the agent stops feeding it, for machines without a
	// watchdog device.
	WatchdogDriverProcess = "process"
)

// Config is the agent's local configuration.
type Config struct {
	Scope     string `json:"scope"`
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	// PluginDir is the plugin directory as configured; empty means
	// plugins/ beside the executable (see PluginDirFor).
	PluginDir string `json:"plugin_dir,omitempty"`

	RESTAPI    RESTAPI    `json:"restapi"`
	Ctl        Ctl        `json:"ctl"`
	Log        Log        `json:"log"`
	Bootstrap  Bootstrap  `json:"bootstrap"`
	PostgreSQL PostgreSQL `json:"postgresql"`
	Watchdog   Watchdog   `json:"watchdog"`
	Tags       Tags       `json:"tags"`
	DCS        DCS        `json:"dcs" config:"-"`
	// Callback are the [callback.<name>] sections: the callback plugins
	// told about every lifecycle event.
	Callback map[string]CallbackPlugin `json:"callback,omitempty" config:"-"`
	Plugins  map[string]Plugin         `json:"plugins,omitempty"`

	file  string
	lines map[string]int
	env   map[string]string
}

// RESTAPI is the [restapi] section.
type RESTAPI struct {
	Listen                  string            `json:"listen"`
	ConnectAddress          string            `json:"connect_address"`
	Authentication          BasicAuth         `json:"authentication"`
	CertFile                string            `json:"certfile,omitempty"`
	KeyFile                 string            `json:"keyfile,omitempty"`
	KeyFilePassword         Secret            `json:"keyfile_password,omitzero"`
	CAFile                  string            `json:"cafile,omitempty"`
	Ciphers                 string            `json:"ciphers,omitempty"`
	VerifyClient            string            `json:"verify_client"`
	Allowlist               []string          `json:"allowlist,omitempty"`
	AllowlistIncludeMembers bool              `json:"allowlist_include_members,omitempty"`
	HTTPExtraHeaders        map[string]string `json:"http_extra_headers,omitempty"`
	HTTPSExtraHeaders       map[string]string `json:"https_extra_headers,omitempty"`
	RequestQueueSize        int               `json:"request_queue_size"`
	ServerTokens            string            `json:"server_tokens"`
}

// BasicAuth is a username and password (REST API and ctl authentication).
type BasicAuth struct {
	Username string `json:"username,omitempty"`
	Password Secret `json:"password,omitzero"`
}

// Ctl is the [ctl] section: how custosctl talks to the REST API.
type Ctl struct {
	Authentication  BasicAuth `json:"authentication"`
	Insecure        bool      `json:"insecure,omitempty"`
	CACert          string    `json:"cacert,omitempty"`
	CertFile        string    `json:"certfile,omitempty"`
	KeyFile         string    `json:"keyfile,omitempty"`
	KeyFilePassword Secret    `json:"keyfile_password,omitzero"`
}

// Log is the [log] section.
type Log struct {
	// Level is one of TRACE, DEBUG, INFO, WARNING, ERROR, CRITICAL,
	// upper-cased on load.
	Level        string         `json:"level"`
	Type         string         `json:"type"`
	Format       string         `json:"format,omitempty"`
	DateFormat   string         `json:"dateformat,omitempty"`
	Dir          string         `json:"dir,omitempty"`
	FileNum      int            `json:"file_num"`
	FileSize     Size           `json:"file_size"`
	StaticFields map[string]any `json:"static_fields,omitempty"`
}

// Bootstrap is the [bootstrap] section.
type Bootstrap struct {
	// DCS seeds the dynamic configuration; defaults are merged in.
	DCS    Dynamic `json:"dcs"`
	Method string  `json:"method"`
	// Initdb are initdb's options (pgdata, nosync, pwfile, sync-only and
	// version are managed by custos and refused).
	Initdb        Options  `json:"initdb,omitempty"`
	PgHBA         []string `json:"pg_hba,omitempty"`
	PostBootstrap string   `json:"post_bootstrap,omitempty" config:"alias=post_init"`
	// Methods are the custom bootstrap methods, [bootstrap.<method>].
	Methods map[string]BootstrapMethod `json:"methods,omitempty" config:"extra"`
}

// BootstrapMethod is a custom bootstrap method section.
type BootstrapMethod struct {
	Command                  string `json:"command"`
	NoParams                 bool   `json:"no_params,omitempty"`
	KeepExistingRecoveryConf bool   `json:"keep_existing_recovery_conf,omitempty"`
	RecoveryConf             Table  `json:"recovery_conf,omitempty"`
	// Params are the other keys, passed to the command as --key=value.
	Params Table `json:"params,omitempty" config:"extra"`
}

// PostgreSQL is the [postgresql] section.
type PostgreSQL struct {
	// Listen is "host[,host...]:port".
	Listen         string         `json:"listen"`
	ConnectAddress string         `json:"connect_address"`
	ProxyAddress   string         `json:"proxy_address,omitempty"`
	DataDir        string         `json:"data_dir"`
	ConfigDir      string         `json:"config_dir,omitempty"`
	BinDir         string         `json:"bin_dir,omitempty"`
	BinName        BinName        `json:"bin_name"`
	PGPass         string         `json:"pgpass,omitempty"`
	Authentication Authentication `json:"authentication"`
	Callbacks      Callbacks      `json:"callbacks"`
	// CreateReplicaMethods lists replica creation methods in order of
	// preference (default: basebackup only).
	CreateReplicaMethods []string `json:"create_replica_methods,omitempty"`
	// Basebackup are pg_basebackup's options.
	Basebackup Options `json:"basebackup,omitempty"`
	// ReplicaMethods are the other [postgresql.<method>] sections, kept
	// as tables for the replica plugins.
	ReplicaMethods map[string]Table `json:"replica_methods,omitempty" config:"extra"`
	Parameters     map[string]Param `json:"parameters,omitempty"`
	PgHBA          []string         `json:"pg_hba,omitempty"`
	PgIdent        []string         `json:"pg_ident,omitempty"`
	RecoveryConf   Table            `json:"recovery_conf,omitempty"`
	CustomConf     string           `json:"custom_conf,omitempty"`
	PGCtlTimeout   time.Duration    `json:"pg_ctl_timeout"`
	UseUnixSocket  bool             `json:"use_unix_socket,omitempty"`
	// UseUnixSocketRepl connects replication over the Unix socket.
	UseUnixSocketRepl bool `json:"use_unix_socket_repl,omitempty"`
	// UsePgRewind is nil when unset locally: the dynamic configuration's
	// value applies then.
	UsePgRewind                            *bool  `json:"use_pg_rewind,omitempty"`
	RemoveDataDirectoryOnRewindFailure     bool   `json:"remove_data_directory_on_rewind_failure,omitempty"`
	RemoveDataDirectoryOnDivergedTimelines bool   `json:"remove_data_directory_on_diverged_timelines,omitempty"`
	PrePromote                             string `json:"pre_promote,omitempty"`
	BeforeStop                             string `json:"before_stop,omitempty"`
	// Rewind are pg_rewind's options.
	Rewind Options `json:"rewind,omitempty"`
}

// BinName overrides the names of PostgreSQL's executables.
type BinName struct {
	PGCtl         string `json:"pg_ctl,omitempty"`
	Initdb        string `json:"initdb,omitempty"`
	PGControlData string `json:"pg_controldata,omitempty"`
	PGBasebackup  string `json:"pg_basebackup,omitempty"`
	Postgres      string `json:"postgres,omitempty"`
	PGIsReady     string `json:"pg_isready,omitempty"`
	PGRewind      string `json:"pg_rewind,omitempty"`
}

// Authentication holds the roles the agent connects as.
type Authentication struct {
	Superuser   PGAuth `json:"superuser"`
	Replication PGAuth `json:"replication"`
	Rewind      PGAuth `json:"rewind"`
}

// PGAuth is a role and its libpq connection settings (libpq names).
type PGAuth struct {
	Username       string `json:"username,omitempty"`
	Password       Secret `json:"password,omitzero"`
	SSLMode        string `json:"sslmode,omitempty"`
	SSLKey         string `json:"sslkey,omitempty"`
	SSLPassword    Secret `json:"sslpassword,omitzero"`
	SSLCert        string `json:"sslcert,omitempty"`
	SSLRootCert    string `json:"sslrootcert,omitempty"`
	SSLCRL         string `json:"sslcrl,omitempty"`
	SSLCRLDir      string `json:"sslcrldir,omitempty"`
	SSLNegotiation string `json:"sslnegotiation,omitempty"`
	GSSEncMode     string `json:"gssencmode,omitempty"`
	ChannelBinding string `json:"channel_binding,omitempty"`
}

// Callbacks are commands run on lifecycle events, called as
// <command> <action> <role> <scope>.
type Callbacks struct {
	OnStart      string `json:"on_start,omitempty"`
	OnStop       string `json:"on_stop,omitempty"`
	OnRestart    string `json:"on_restart,omitempty"`
	OnReload     string `json:"on_reload,omitempty"`
	OnRoleChange string `json:"on_role_change,omitempty"`
	// Timeout bounds one run of a callback script and of the pre_promote,
	// before_stop and post_bootstrap hooks (a custos extension).
	Timeout time.Duration `json:"timeout"`
}

// Scripts returns the callback scripts by action name ("on_start", ...),
// the empty ones included.
func (c Callbacks) Scripts() map[string]string {
	return map[string]string{
		"on_start":       c.OnStart,
		"on_stop":        c.OnStop,
		"on_restart":     c.OnRestart,
		"on_reload":      c.OnReload,
		"on_role_change": c.OnRoleChange,
	}
}

// Watchdog is the [watchdog] section.
type Watchdog struct {
	Mode   string `json:"mode"`
	Driver string `json:"driver"`
	// Device is used by the default driver only.
	Device string `json:"device"`
	// SafetyMargin is WatchdogSafetyMarginHalfTTL for Patroni's -1.
	SafetyMargin time.Duration `json:"safety_margin"`
}

// Tags is the [tags] section, published in the member key.
type Tags struct {
	NoFailover       bool   `json:"nofailover"`
	FailoverPriority int    `json:"failover_priority"`
	NoLoadBalance    bool   `json:"noloadbalance"`
	CloneFrom        bool   `json:"clonefrom"`
	ReplicateFrom    string `json:"replicatefrom,omitempty"`
	NoSync           bool   `json:"nosync"`
	SyncPriority     int    `json:"sync_priority"`
	NoStream         bool   `json:"nostream"`
	// Custom are the user's own tags, published as they are.
	Custom map[string]any `json:"custom,omitempty" config:"extra"`
}

// Plugin is a [plugins.<dir name>] section.
type Plugin struct {
	// SHA256 is the expected checksum of the plugin binary (lower-case
	// hex); empty turns verification off.
	SHA256 string `json:"sha256,omitempty"`
}

// Default returns the configuration every file is read over.
func Default() Config {
	return Config{
		Namespace: DefaultNamespace,
		RESTAPI: RESTAPI{
			VerifyClient:     DefaultVerifyClient,
			RequestQueueSize: DefaultRequestQueueSize,
			ServerTokens:     DefaultServerTokens,
		},
		Log: Log{
			Level:    DefaultLogLevel,
			Type:     DefaultLogType,
			FileNum:  DefaultLogFileNum,
			FileSize: DefaultLogFileSize,
		},
		Bootstrap: Bootstrap{
			DCS:    DefaultDynamic(),
			Method: DefaultBootstrapMethod,
		},
		PostgreSQL: PostgreSQL{
			PGCtlTimeout: DefaultPGCtlTimeout,
			Callbacks:    Callbacks{Timeout: DefaultCallbackTimeout},
		},
		Watchdog: Watchdog{
			Mode:         DefaultWatchdogMode,
			Driver:       DefaultWatchdogDriver,
			Device:       DefaultWatchdogDevice,
			SafetyMargin: DefaultWatchdogSafetyMargin,
		},
		Tags: Tags{
			FailoverPriority: DefaultFailoverPriority,
			SyncPriority:     DefaultSyncPriority,
		},
	}
}

// Load reads and validates the configuration file at path, applying
// environment overrides read through lookupEnv (os.LookupEnv in the agent;
// nil for none). When the configuration is invalid the error is Problems,
// listing every problem.
func Load(path string, lookupEnv func(string) (string, bool)) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading configuration: %w", err)
	}
	return Parse(path, data, lookupEnv)
}

// Parse is Load for data already read; name is the file name used in
// problems.
func Parse(name string, data []byte, lookupEnv func(string) (string, bool)) (*Config, error) {
	tree, lines, prob := parseTOML(data)
	if prob != nil {
		prob.File = name
		return nil, Problems{*prob}
	}
	d := &decoder{file: name, lines: lines, env: map[string]string{}}
	if lookupEnv != nil {
		applyEnv(d, tree, lookupEnv)
	}
	cfg := Default()
	d.decode(nil, tree, reflect.ValueOf(&cfg).Elem())
	cfg.DCS = decodeDCS(d, tree["dcs"])
	cfg.Callback = decodeCallbacks(d, tree["callback"])
	validate(d, &cfg)
	if len(d.probs) > 0 {
		d.probs.sort()
		return nil, d.probs
	}
	cfg.file, cfg.lines, cfg.env = name, lines, d.env
	return &cfg, nil
}

// Dynamic returns the bootstrap dynamic configuration ([bootstrap.dcs])
// with defaults merged in.
func (c *Config) Dynamic() Dynamic { return c.Bootstrap.DCS }

// DefaultPluginDir returns plugins/ beside the given executable.
func DefaultPluginDir(executable string) string {
	return filepath.Join(filepath.Dir(executable), DefaultPluginDirName)
}

// PluginDirFor returns the plugin directory: plugin_dir when set, otherwise
// plugins/ beside executable (the path of the running custos binary, from
// os.Executable).
func (c *Config) PluginDirFor(executable string) string {
	if c.PluginDir != "" {
		return c.PluginDir
	}
	return DefaultPluginDir(executable)
}
