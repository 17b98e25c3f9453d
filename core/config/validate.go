package config

import (
	"fmt"
	"net"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/kballard/go-shellquote"
)

// Values refused in tool option lists because custos manages them (as
// Patroni refuses them).
var (
	forbiddenInitdbOptions     = []string{"pgdata", "nosync", "pwfile", "sync-only", "version"}
	forbiddenBasebackupOptions = []string{"pgdata", "format", "wal-method", "xlog-method"}
)

var sha256Pattern = regexp.MustCompile(`^[0-9a-fA-F]{64}$`)

// validate checks the decoded configuration: required values, enums,
// ranges, addresses and values that conflict with each other.
func validate(d *decoder, c *Config) {
	v := validator{d}

	v.required("scope", c.Scope)
	v.required("name", c.Name)
	if strings.Contains(c.Name, "/") {
		d.addAt("name", "invalid value %q: a member name cannot contain '/' (it is a DCS key)", c.Name)
	}
	if strings.Contains(c.Scope, "/") {
		d.addAt("scope", "invalid value %q: a scope cannot contain '/' (it is a DCS key)", c.Scope)
	}
	if d.present("namespace") && strings.Trim(c.Namespace, "/") == "" {
		d.addAt("namespace", "invalid value %q: the namespace must name a path, e.g. %q", c.Namespace, DefaultNamespace)
	}

	// [restapi]
	r := &c.RESTAPI
	v.address("restapi.listen", r.Listen, false, false)
	v.address("restapi.connect_address", r.ConnectAddress, true, false)
	v.enum("restapi.verify_client", &r.VerifyClient, "none", "optional", "required")
	v.enum("restapi.server_tokens", &r.ServerTokens, "original", "productonly", "minimal")
	// request_queue_size caps the connections served at once: 0 would
	// serve none.
	v.atLeast("restapi.request_queue_size", r.RequestQueueSize, 1)
	v.basicAuth("restapi.authentication", r.Authentication)
	v.tlsPair("restapi", r.CertFile, r.KeyFile, r.KeyFilePassword)
	if r.VerifyClient != "none" && r.CertFile == "" && !d.hasProblem("restapi.verify_client") {
		d.addAt("restapi.verify_client", "conflicting values: verify_client = %q needs TLS (restapi.certfile)", r.VerifyClient)
	}

	// [ctl]
	v.basicAuth("ctl.authentication", c.Ctl.Authentication)
	v.tlsPair("ctl", c.Ctl.CertFile, c.Ctl.KeyFile, c.Ctl.KeyFilePassword)

	// [log]
	if lvl := strings.ToUpper(c.Log.Level); lvl == "WARN" {
		c.Log.Level = "WARNING"
	}
	c.Log.Level = strings.ToUpper(c.Log.Level)
	v.enum("log.level", &c.Log.Level, "TRACE", "DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
	v.enum("log.type", &c.Log.Type, "plain", "json")
	v.atLeast("log.file_num", c.Log.FileNum, 0)
	if c.Log.FileSize < 1 && !d.hasProblem("log.file_size") {
		d.addAt("log.file_size", "out of range: %d bytes, want a positive size", c.Log.FileSize)
	}

	// [bootstrap]
	b := &c.Bootstrap
	for _, p := range b.DCS.Validate() {
		if key := "bootstrap.dcs." + p.Path; !d.probs.at(key) {
			d.addAt(key, "%s", p.Message)
		}
	}
	v.required("bootstrap.method", b.Method)
	if b.Method != "" && b.Method != DefaultBootstrapMethod {
		if _, ok := b.Methods[b.Method]; !ok {
			d.addAt("bootstrap.method", "no [bootstrap.%s] section for bootstrap method %q", quoteKey(b.Method), b.Method)
		}
	}
	for _, name := range sortedKeys(b.Methods) {
		// Without a command the section names a bootstrap plugin serving
		// the method; the agent finds it and has it check the section
		// when it starts (and with --validate-config).
		m := b.Methods[name]
		if m.Command != "" {
			v.command(path{"bootstrap", name, "command"}.String(), m.Command)
			continue
		}
		for key, set := range map[string]bool{"no_params": m.NoParams, "keep_existing_recovery_conf": m.KeepExistingRecoveryConf} {
			if set {
				d.addAt(path{"bootstrap", name, key}.String(), "applies to a command, and the section has none (without one it names a bootstrap plugin, which sets the recovery itself)")
			}
		}
	}
	v.forbidden("bootstrap.initdb", b.Initdb, forbiddenInitdbOptions)
	postBootstrap := "bootstrap.post_bootstrap"
	if !d.present(postBootstrap) && d.present("bootstrap.post_init") {
		postBootstrap = "bootstrap.post_init"
	}
	v.command(postBootstrap, b.PostBootstrap)

	// [postgresql]
	pg := &c.PostgreSQL
	v.address("postgresql.listen", pg.Listen, false, true)
	v.address("postgresql.connect_address", pg.ConnectAddress, true, false)
	if pg.ProxyAddress != "" {
		v.address("postgresql.proxy_address", pg.ProxyAddress, true, false)
	}
	v.required("postgresql.data_dir", pg.DataDir)
	v.required("postgresql.authentication.superuser.username", pg.Authentication.Superuser.Username)
	v.required("postgresql.authentication.replication.username", pg.Authentication.Replication.Username)
	for role, a := range map[string]*PGAuth{"superuser": &pg.Authentication.Superuser, "replication": &pg.Authentication.Replication, "rewind": &pg.Authentication.Rewind} {
		prefix := "postgresql.authentication." + role + "."
		v.optionalEnum(prefix+"sslmode", &a.SSLMode, "disable", "allow", "prefer", "require", "verify-ca", "verify-full")
		v.optionalEnum(prefix+"gssencmode", &a.GSSEncMode, "disable", "prefer", "require")
		v.optionalEnum(prefix+"channel_binding", &a.ChannelBinding, "disable", "prefer", "require")
		v.optionalEnum(prefix+"sslnegotiation", &a.SSLNegotiation, "postgres", "direct")
	}
	if pg.PGCtlTimeout <= 0 && !d.hasProblem("postgresql.pg_ctl_timeout") {
		d.addAt("postgresql.pg_ctl_timeout", "out of range: %v must be positive", pg.PGCtlTimeout)
	}
	v.forbidden("postgresql.basebackup", pg.Basebackup, forbiddenBasebackupOptions)
	if pg.Callbacks.Timeout <= 0 && !d.hasProblem("postgresql.callbacks.timeout") {
		d.addAt("postgresql.callbacks.timeout", "out of range: %v must be positive", pg.Callbacks.Timeout)
	}
	for _, action := range sortedKeys(pg.Callbacks.Scripts()) {
		v.command("postgresql.callbacks."+action, pg.Callbacks.Scripts()[action])
	}
	v.command("postgresql.pre_promote", pg.PrePromote)
	v.command("postgresql.before_stop", pg.BeforeStop)
	for i, m := range pg.CreateReplicaMethods {
		if strings.TrimSpace(m) == "" {
			d.addAt(fmt.Sprintf("postgresql.create_replica_methods[%d]", i), "invalid value: empty method name")
		}
	}
	var standbyMethods []string
	if b.DCS.StandbyCluster != nil {
		standbyMethods = b.DCS.StandbyCluster.CreateReplicaMethods
		// Not run yet: a standby cluster's member would promote itself
		// and become a second primary beside the remote one.
		d.addAt("bootstrap.dcs.standby_cluster", "not supported yet: custos does not run standby clusters (their leader would promote itself); remove it and replicate with a replica method instead")
	}
	for _, name := range sortedKeys(pg.ReplicaMethods) {
		if !slices.Contains(pg.CreateReplicaMethods, name) && !slices.Contains(standbyMethods, name) {
			d.addAt(path{"postgresql", name}.String(), "unknown key (a replica method section must be named in postgresql.create_replica_methods)")
		}
	}

	// [watchdog]
	v.enum("watchdog.mode", &c.Watchdog.Mode, WatchdogOff, WatchdogAutomatic, WatchdogRequired)
	v.enum("watchdog.driver", &c.Watchdog.Driver, WatchdogDriverDefault, WatchdogDriverProcess)
	if m := c.Watchdog.SafetyMargin; m < 0 && m != WatchdogSafetyMarginHalfTTL && !d.hasProblem("watchdog.safety_margin") {
		d.addAt("watchdog.safety_margin", "out of range: %v (use a positive duration, or -1 for ttl/2)", m)
	}
	if c.Watchdog.Mode != WatchdogOff && c.Watchdog.Driver == WatchdogDriverDefault && !d.hasProblem("watchdog.mode") {
		v.required("watchdog.device", c.Watchdog.Device)
	}

	// [tags]
	t := &c.Tags
	v.atLeast("tags.failover_priority", t.FailoverPriority, 0)
	v.atLeast("tags.sync_priority", t.SyncPriority, 0)
	if t.NoFailover && t.FailoverPriority > 0 && d.present("tags.failover_priority") {
		d.addAt("tags.failover_priority", "conflicting values: nofailover = true with failover_priority = %d (drop one of them)", t.FailoverPriority)
	}

	// [plugins.*]
	for _, name := range sortedKeys(c.Plugins) {
		pl := c.Plugins[name]
		key := path{"plugins", name, "sha256"}.String()
		if pl.SHA256 != "" && !sha256Pattern.MatchString(pl.SHA256) {
			d.addAt(key, "invalid value: want 64 hexadecimal characters (sha256sum of the plugin binary)")
			continue
		}
		pl.SHA256 = strings.ToLower(pl.SHA256)
		c.Plugins[name] = pl
	}
}

type validator struct{ d *decoder }

// hasProblem reports whether a problem was already recorded at key (a
// wrong type leaves the default in place, which must not be reported again
// as missing or out of range).
func (d *decoder) hasProblem(key string) bool {
	for _, p := range d.probs {
		if p.Path == key || strings.HasPrefix(p.Path, key+".") || strings.HasPrefix(p.Path, key+"[") {
			return true
		}
	}
	return false
}

func (v validator) required(key, value string) {
	if strings.TrimSpace(value) != "" || v.d.hasProblem(key) {
		return
	}
	if v.d.present(key) {
		v.d.addAt(key, "missing required value (it is empty)")
		return
	}
	v.d.addAt(key, "missing required value")
}

// enum checks value against allowed, case-insensitively, and normalizes it
// to the allowed spelling.
func (v validator) enum(key string, value *string, allowed ...string) {
	if v.d.hasProblem(key) {
		return
	}
	for _, a := range allowed {
		if strings.EqualFold(*value, a) {
			*value = a
			return
		}
	}
	v.d.addAt(key, "invalid value %q: want one of %s", *value, strings.Join(allowed, ", "))
}

func (v validator) optionalEnum(key string, value *string, allowed ...string) {
	if *value != "" {
		v.enum(key, value, allowed...)
	}
}

func (v validator) atLeast(key string, value, minimum int) {
	if value < minimum && !v.d.hasProblem(key) {
		v.d.addAt(key, "out of range: %d is below the minimum %d", value, minimum)
	}
}

func (v validator) basicAuth(key string, a BasicAuth) {
	if (a.Username == "") != (a.Password.Value() == "") && !v.d.hasProblem(key) {
		v.d.addAt(key, "conflicting values: set both username and password, or neither")
	}
}

func (v validator) tlsPair(section, certFile, keyFile string, keyPassword Secret) {
	if keyFile != "" && certFile == "" {
		v.d.addAt(section+".keyfile", "conflicting values: keyfile is set but certfile is not")
	}
	if keyPassword.IsSet() && keyFile == "" && certFile == "" {
		v.d.addAt(section+".keyfile_password", "conflicting values: keyfile_password is set but there is no certfile or keyfile")
	}
}

func (v validator) forbidden(key string, opts Options, forbidden []string) {
	for _, o := range opts {
		if slices.Contains(forbidden, o.Name) {
			v.d.addAt(key, "option %q is not allowed: custos manages it (refused: %s)", o.Name, strings.Join(forbidden, ", "))
		}
	}
}

// command checks a command line run by the agent (a callback script, a
// hook): it must split into words as a POSIX shell would, and name a
// program unless it is empty (no command).
func (v validator) command(key, line string) {
	if line == "" || v.d.hasProblem(key) {
		return
	}
	words, err := shellquote.Split(line)
	switch {
	case err != nil:
		v.d.addAt(key, "invalid command %q: %v", line, err)
	case len(words) == 0:
		v.d.addAt(key, "invalid command %q: it names no program", line)
	}
}

// address checks a "host:port" (reachable: a connect address, which must
// name a host others can reach) or a listen address, where multiHost allows
// PostgreSQL's "host1,host2:port".
func (v validator) address(key, value string, reachable, multiHost bool) {
	if strings.TrimSpace(value) == "" {
		v.required(key, value)
		return
	}
	if v.d.hasProblem(key) {
		return
	}
	if err := checkAddress(value, reachable, multiHost); err != nil {
		kind := "listen"
		if reachable {
			kind = "connect"
		}
		v.d.addAt(key, "invalid %s address %q: %v", kind, value, err)
	}
}

func checkAddress(value string, reachable, multiHost bool) error {
	i := strings.LastIndex(value, ":")
	if i < 0 {
		return fmt.Errorf("want host:port")
	}
	hostPart, portPart := value[:i], value[i+1:]
	port, err := strconv.Atoi(portPart)
	if err != nil || port < 1 || port > 65535 {
		return fmt.Errorf("port %q is not a number between 1 and 65535", portPart)
	}
	hosts := []string{hostPart}
	if multiHost {
		hosts = strings.Split(hostPart, ",")
	} else if h, _, err := net.SplitHostPort(value); err == nil {
		hosts = []string{h}
	} else if strings.Count(hostPart, ":") > 0 && !strings.HasPrefix(hostPart, "[") {
		return fmt.Errorf("put an IPv6 address in brackets, e.g. [::1]:%d", port)
	}
	for _, h := range hosts {
		h = strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(h), "["), "]")
		switch {
		case h == "" && !reachable:
			// listen on every address
		case h == "":
			return fmt.Errorf("the host is missing")
		case strings.ContainsAny(h, " \t/"):
			return fmt.Errorf("%q is not a host name or IP address", h)
		case reachable && (h == "*" || isUnspecified(h)):
			return fmt.Errorf("%q is a wildcard; give an address other members can reach", h)
		}
	}
	return nil
}

func isUnspecified(h string) bool {
	ip := net.ParseIP(h)
	return ip != nil && ip.IsUnspecified()
}
