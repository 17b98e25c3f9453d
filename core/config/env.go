package config

import (
	"reflect"
	"strings"
)

// EnvPrefix starts every environment override, as PATRONI_ does for Patroni.
const EnvPrefix = "CUSTOS_"

// knownDCSKeys are the keys Patroni reads from its PATRONI_<DCS>_<KEY>
// variables. The lookup function cannot list variables, so an override is
// found for these keys and for every key the file's DCS section already
// has. A nested key is set by giving its table as a TOML value
// (CUSTOS_ETCD3_TLS='{cacert = "/ca.pem"}').
var knownDCSKeys = map[string][]string{
	"etcd":       {"host", "hosts", "use_proxies", "url", "proxy", "srv", "srv_suffix", "protocol", "username", "password", "cacert", "cert", "key"},
	"etcd3":      {"host", "hosts", "use_proxies", "url", "proxy", "srv", "srv_suffix", "protocol", "username", "password", "cacert", "cert", "key"},
	"consul":     {"host", "url", "port", "scheme", "token", "verify", "cacert", "cert", "key", "dc", "consistency", "checks", "register_service", "service_tags", "service_check_interval", "service_check_tls_server_name"},
	"zookeeper":  {"hosts", "use_ssl", "cacert", "cert", "key", "key_password", "verify", "set_acls", "auth_data"},
	"exhibitor":  {"hosts", "poll_interval", "port"},
	"kubernetes": {"bypass_api_service", "namespace", "labels", "scope_label", "role_label", "leader_label_value", "follower_label_value", "standby_leader_label_value", "tmp_role_label", "bootstrap_labels", "use_endpoints", "pod_ip", "ports", "cacert", "retriable_http_codes"},
	"raft":       {"self_addr", "bind_addr", "partner_addrs", "data_dir", "password"},
}

// applyEnv writes the environment overrides into the tree, so they take
// precedence over the file, and records which variable set which key.
func applyEnv(d *decoder, tree map[string]any, lookup func(string) (string, bool)) {
	set := func(p path, name string) {
		raw, ok := lookup(name)
		if !ok {
			return
		}
		if setTree(tree, p, envValue{name: name, raw: raw}) {
			d.env[p.String()] = name
		}
	}
	for _, key := range []string{"name", "scope", "namespace", "plugin_dir"} {
		set(path{key}, EnvPrefix+envName(key))
	}
	// Sections whose scalar keys map one to one: CUSTOS_<SECTION>_<KEY>.
	for section, t := range map[string]reflect.Type{
		"log":     reflect.TypeFor[Log](),
		"restapi": reflect.TypeFor[RESTAPI](),
		"ctl":     reflect.TypeFor[Ctl](),
	} {
		for _, f := range fieldsOf(t).fields {
			if t.Field(f.index).Type.Kind() == reflect.Struct && t.Field(f.index).Type != secretType {
				continue // authentication, below
			}
			set(path{section, f.name}, EnvPrefix+envName(section)+"_"+envName(f.name))
		}
	}
	for _, section := range []string{"restapi", "ctl"} {
		for _, key := range []string{"username", "password"} {
			set(path{section, "authentication", key}, EnvPrefix+envName(section)+"_"+envName(key))
		}
	}
	for _, key := range []string{"listen", "connect_address", "proxy_address", "data_dir", "config_dir", "bin_dir", "pgpass"} {
		set(path{"postgresql", key}, EnvPrefix+"POSTGRESQL_"+envName(key))
	}
	for _, f := range fieldsOf(reflect.TypeFor[BinName]()).fields {
		set(path{"postgresql", "bin_name", f.name}, EnvPrefix+"POSTGRESQL_BIN_"+envName(f.name))
	}
	for _, role := range []string{"superuser", "replication", "rewind"} {
		for _, f := range fieldsOf(reflect.TypeFor[PGAuth]()).fields {
			set(path{"postgresql", "authentication", role, f.name}, EnvPrefix+envName(role)+"_"+envName(f.name))
		}
	}
	applyDCSEnv(d, tree, lookup)
}

// applyDCSEnv applies CUSTOS_<DCSNAME>_<KEY> to the DCS sections of the
// file and, for DCS names Patroni knows, creates the section.
func applyDCSEnv(d *decoder, tree map[string]any, lookup func(string) (string, bool)) {
	sections, isTable := tree["dcs"].(map[string]any)
	if tree["dcs"] != nil && !isTable {
		return // the decoder reports the file's type error
	}
	names := map[string]bool{}
	for name := range knownDCSKeys {
		names[name] = true
	}
	for name := range sections {
		names[name] = true
	}
	for _, name := range sortedKeys(names) {
		keys := map[string]bool{}
		for _, k := range knownDCSKeys[name] {
			keys[k] = true
		}
		section, _ := sections[name].(map[string]any)
		if sections != nil && sections[name] != nil && section == nil {
			continue // not a table: reported by decodeDCS
		}
		for k := range section {
			keys[k] = true
		}
		for _, key := range sortedKeys(keys) {
			varName := EnvPrefix + envName(name) + "_" + envName(key)
			raw, ok := lookup(varName)
			if !ok {
				continue
			}
			if section == nil {
				section = map[string]any{}
				if sections == nil {
					sections = map[string]any{}
					tree["dcs"] = sections
				}
				sections[name] = section
				d.env[path{"dcs", name}.String()] = varName
			}
			if secretKey(key) || key == "username" {
				section[key] = raw // "12345" is a password, not a number
			} else {
				section[key] = dcsEnvValue(raw, section[key])
			}
			d.env[path{"dcs", name, key}.String()] = varName
		}
	}
}

// dcsEnvValue interprets an override of a DCS key, whose type core does not
// know: it follows the type of the file's value when there is one (so a
// numeric password stays a string), and otherwise reads a TOML value,
// falling back to the plain string.
func dcsEnvValue(raw string, fileValue any) any {
	switch fileValue.(type) {
	case string:
		return raw
	case []any:
		if v, ok := parseTOMLValue(raw); ok {
			if _, isList := v.([]any); isList {
				return v
			}
		}
		return splitList(raw)
	}
	if v, ok := parseTOMLValue(raw); ok {
		return v
	}
	return raw
}

// setTree sets the value at p, creating tables on the way. It does nothing
// when a table on the way is some other value in the file (the decoder
// reports that).
func setTree(tree map[string]any, p path, v any) bool {
	m := tree
	for _, k := range p[:len(p)-1] {
		next, exists := m[k]
		if !exists {
			nm := map[string]any{}
			m[k] = nm
			m = nm
			continue
		}
		nm, ok := next.(map[string]any)
		if !ok {
			return false
		}
		m = nm
	}
	m[p[len(p)-1]] = v
	return true
}

// envName spells a key as it appears in a variable name.
func envName(key string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z':
			return r - 'a' + 'A'
		case r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
			return r
		}
		return '_'
	}, key)
}
