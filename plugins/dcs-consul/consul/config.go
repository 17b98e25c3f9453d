package consul

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/custos-ha/custos/plugin/sdk"
)

// Defaults of the section, Patroni's.
const (
	// DefaultHost and DefaultPort address the local Consul agent, which is
	// how Consul is meant to be used (one agent per machine).
	DefaultHost = "127.0.0.1"
	DefaultPort = 8500
	// DefaultServiceCheckInterval is how often Consul runs the HTTP check of
	// a registered service.
	DefaultServiceCheckInterval = 5 * time.Second
)

// Schemes of the Consul HTTP API.
const (
	schemeHTTP  = "http"
	schemeHTTPS = "https"
)

// Read consistency modes of the Consul HTTP API.
const (
	// ConsistencyDefault reads from the leader without checking that it is
	// still the leader: stale reads are possible for a short while after a
	// partition.
	ConsistencyDefault = "default"
	// ConsistencyConsistent makes the leader confirm its leadership with a
	// quorum before answering: linearizable reads.
	ConsistencyConsistent = "consistent"
	// ConsistencyStale lets any server answer, however far behind.
	ConsistencyStale = "stale"
)

// Config is the [dcs.consul] section, with Patroni's consul key names.
// Build it with ParseConfig; it prints without its token.
type Config struct {
	// Host is the agent's host name or address (no port).
	Host string
	// Port is the agent's HTTP(S) port.
	Port int
	// Scheme is http or https.
	Scheme string
	// URL is the url key as given, without user info; when set it decided
	// Scheme, Host and Port.
	URL string
	// Token is the ACL token sent with every request. When it is empty,
	// Consul's client library falls back to CONSUL_HTTP_TOKEN (or
	// CONSUL_HTTP_TOKEN_FILE) from the environment, as Consul's own tools
	// do. The address, scheme, TLS settings and datacenter come from the
	// section alone.
	Token Secret
	// Verify checks the agent's certificate (https); a CACert turns it on
	// whatever Verify says, as in Patroni.
	Verify bool
	// CACert verifies the agent's certificate (the system roots when empty).
	CACert string
	// Cert is the client certificate file; Key is its private key file,
	// which may be omitted when Cert holds the key too.
	Cert string
	Key  string
	// DC is the datacenter to talk to (the agent's own when empty).
	DC string
	// Consistency is the read mode of GetCluster and Watch: default,
	// consistent or stale. Patroni's daemon defaults to "default"; custos
	// defaults to "consistent", since the HA loop acts on what it reads.
	Consistency string
	// Checks are the IDs of Consul checks the member's session depends on:
	// when one turns critical, Consul invalidates the session and the
	// member's keys go at once. Empty (the default) ties the session to its
	// TTL alone.
	Checks []string
	// RegisterService registers the member as a Consul service named after
	// the scope, tagged with its role, with an HTTP check on its REST API.
	RegisterService bool
	// ServiceTags are added to the role tag of the registered service.
	ServiceTags []string
	// ServiceCheckInterval is how often Consul runs the service's check.
	ServiceCheckInterval time.Duration
	// ServiceCheckTLSServerName is the server name the check verifies the
	// REST API's certificate against, when set.
	ServiceCheckTLSServerName    string
	hasServiceCheckTLSServerName bool
}

// Secret is a string that never prints or marshals its value.
type Secret string

// String implements fmt.Stringer.
func (Secret) String() string { return redacted }

// GoString implements fmt.GoStringer.
func (Secret) GoString() string { return `"<redacted>"` }

// MarshalJSON implements json.Marshaler.
func (Secret) MarshalJSON() ([]byte, error) { return []byte(`"<redacted>"`), nil }

const redacted = "<redacted>"

// Address is the agent's "host:port".
func (c *Config) Address() string { return net.JoinHostPort(c.Host, strconv.Itoa(c.Port)) }

// configKeys are the keys of the section and how each is decoded.
var configKeys = map[string]func(c *Config, path string, v any, errs *sdk.ConfigError){
	"host":   func(c *Config, p string, v any, e *sdk.ConfigError) { c.Host = decodeString(p, v, e) },
	"url":    func(c *Config, p string, v any, e *sdk.ConfigError) { c.URL = decodeString(p, v, e) },
	"port":   func(c *Config, p string, v any, e *sdk.ConfigError) { c.Port = decodePort(p, v, e) },
	"scheme": func(c *Config, p string, v any, e *sdk.ConfigError) { c.Scheme = decodeString(p, v, e) },
	"token":  func(c *Config, p string, v any, e *sdk.ConfigError) { c.Token = Secret(decodeString(p, v, e)) },
	"verify": func(c *Config, p string, v any, e *sdk.ConfigError) { c.Verify = decodeBool(p, v, e) },
	"cacert": func(c *Config, p string, v any, e *sdk.ConfigError) { c.CACert = decodeString(p, v, e) },
	"cert":   func(c *Config, p string, v any, e *sdk.ConfigError) { c.Cert = decodeString(p, v, e) },
	"key":    func(c *Config, p string, v any, e *sdk.ConfigError) { c.Key = decodeString(p, v, e) },
	"dc":     func(c *Config, p string, v any, e *sdk.ConfigError) { c.DC = decodeString(p, v, e) },
	"checks": func(c *Config, p string, v any, e *sdk.ConfigError) { c.Checks = decodeList(p, v, e) },
	"service_tags": func(c *Config, p string, v any, e *sdk.ConfigError) {
		c.ServiceTags = decodeList(p, v, e)
	},
	"consistency": func(c *Config, p string, v any, e *sdk.ConfigError) {
		c.Consistency = decodeString(p, v, e)
	},
	"register_service": func(c *Config, p string, v any, e *sdk.ConfigError) {
		c.RegisterService = decodeBool(p, v, e)
	},
	"service_check_interval": func(c *Config, p string, v any, e *sdk.ConfigError) {
		c.ServiceCheckInterval = decodeDuration(p, v, e)
	},
	"service_check_tls_server_name": func(c *Config, p string, v any, e *sdk.ConfigError) {
		c.ServiceCheckTLSServerName = decodeString(p, v, e)
		c.hasServiceCheckTLSServerName = true
	},
}

// ParseConfig decodes and checks the JSON of the section without touching
// the network or the file system. Every problem is reported, each with its
// key path, in one *sdk.ConfigError. An empty section is valid: it
// addresses the local agent at 127.0.0.1:8500 over http.
func ParseConfig(data []byte) (*Config, error) {
	errs := &sdk.ConfigError{}
	c := &Config{Verify: true, ServiceCheckInterval: DefaultServiceCheckInterval}
	raw := map[string]any{}
	if trimmed := bytes.TrimSpace(data); len(trimmed) > 0 && string(trimmed) != "null" {
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.UseNumber()
		var top any
		if err := dec.Decode(&top); err != nil {
			errs.Add("", "not valid JSON: %v", err)
			return nil, errs
		}
		m, ok := top.(map[string]any)
		if !ok {
			errs.Add("", "must be a table of keys, got %s", jsonType(top))
			return nil, errs
		}
		raw = m
	}
	names := make([]string, 0, len(raw))
	for k := range raw {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		decode, ok := configKeys[k]
		if !ok {
			errs.Add(k, "unknown key (known: %s)", strings.Join(knownKeys(), ", "))
			continue
		}
		decode(c, k, raw[k], errs)
	}
	c.check(raw, errs)
	if err := errs.OrNil(); err != nil {
		return nil, err
	}
	return c, nil
}

func knownKeys() []string {
	keys := make([]string, 0, len(configKeys))
	for k := range configKeys {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// check validates the decoded values against each other and settles the
// address.
func (c *Config) check(raw map[string]any, errs *sdk.ConfigError) {
	c.address(raw, errs)
	if c.Key != "" && c.Cert == "" {
		errs.Add("cert", "must be set with key")
	}
	switch c.Consistency {
	case "":
		if _, ok := raw["consistency"]; ok {
			errs.Add("consistency", "must be default, consistent or stale")
		}
		c.Consistency = ConsistencyConsistent
	case ConsistencyDefault, ConsistencyConsistent, ConsistencyStale:
	default:
		errs.Add("consistency", "must be default, consistent or stale, got %q", c.Consistency)
	}
	if strings.ContainsAny(c.DC, "/?#& \t") {
		errs.Add("dc", "%q is not a datacenter name", c.DC)
	}
	for i, id := range c.Checks {
		if strings.TrimSpace(id) == "" && !hasProblem(errs, "checks") {
			errs.Add(fmt.Sprintf("checks[%d]", i), "empty check ID")
		}
	}
	for i, tag := range c.ServiceTags {
		if strings.TrimSpace(tag) == "" && !hasProblem(errs, "service_tags") {
			errs.Add(fmt.Sprintf("service_tags[%d]", i), "empty tag")
		}
	}
	if _, ok := raw["service_check_interval"]; ok && !hasProblem(errs, "service_check_interval") && c.ServiceCheckInterval <= 0 {
		errs.Add("service_check_interval", "must be positive")
	}
}

// address settles Scheme, Host and Port with Patroni's precedence: url
// (scheme, host and port from it, port 8500 if it has none); else host
// ("host[:port]"; an explicit port key wins over the port in host); else
// 127.0.0.1; port 8500; scheme http. Both url and host are checked even
// when url wins, so that a typo never hides behind the precedence.
func (c *Config) address(raw map[string]any, errs *sdk.ConfigError) {
	_, hasPort := raw["port"]
	if !hasPort {
		c.Port = DefaultPort
	}
	switch c.Scheme {
	case "":
		if _, ok := raw["scheme"]; ok {
			errs.Add("scheme", "must be http or https")
		}
		c.Scheme = schemeHTTP
	case schemeHTTP, schemeHTTPS:
	default:
		errs.Add("scheme", "must be http or https, got %q", c.Scheme)
	}
	host, hostPort := DefaultHost, 0
	if _, ok := raw["host"]; ok && !hasProblem(errs, "host") {
		h, p, err := splitHostPort(c.Host)
		if err != nil {
			errs.Add("host", "%v", err)
		}
		host, hostPort = h, p
	}
	if _, ok := raw["url"]; ok && !hasProblem(errs, "url") {
		scheme, h, p, err := parseURL(c.URL)
		if err != nil {
			errs.Add("url", "%v", err)
			return
		}
		c.Scheme, c.Host, c.Port = scheme, h, p
		c.URL = redactURL(c.URL)
		return
	}
	c.Host = host
	if !hasPort && hostPort != 0 {
		c.Port = hostPort
	}
}

func hasProblem(errs *sdk.ConfigError, path string) bool {
	for _, p := range errs.Problems {
		if p.Path == path || strings.HasPrefix(p.Path, path+"[") {
			return true
		}
	}
	return false
}

// splitHostPort reads "host[:port]"; port is 0 when not given.
func splitHostPort(s string) (string, int, error) {
	s = strings.TrimSpace(s)
	switch {
	case s == "":
		return "", 0, errors.New("empty host")
	case strings.Contains(s, "://"):
		return "", 0, fmt.Errorf("%q must be host[:port], not a URL (a URL goes in url)", s)
	case strings.ContainsAny(s, "/ \t@?#"):
		return "", 0, fmt.Errorf("%q is not a host[:port]", s)
	}
	host, portStr, err := net.SplitHostPort(s)
	if err != nil {
		// No port: a name, an IPv4 address or a bare IPv6 address.
		if ip := net.ParseIP(strings.Trim(s, "[]")); ip != nil {
			return ip.String(), 0, nil
		}
		if strings.ContainsAny(s, ":[]") {
			return "", 0, fmt.Errorf("%q is not a host[:port]", s)
		}
		return s, 0, nil
	}
	if host == "" {
		return "", 0, fmt.Errorf("%q has no host", s)
	}
	port, err := parsePort(portStr)
	if err != nil {
		return "", 0, fmt.Errorf("%q: %v", s, err)
	}
	return host, port, nil
}

// parseURL reads "http(s)://host[:port]".
func parseURL(s string) (scheme, host string, port int, err error) {
	u, err := url.Parse(strings.TrimSpace(s))
	if err != nil {
		return "", "", 0, fmt.Errorf("not a URL: %v", err)
	}
	if u.Scheme != schemeHTTP && u.Scheme != schemeHTTPS {
		return "", "", 0, fmt.Errorf("%q: scheme must be http or https", redactURL(s))
	}
	if u.Hostname() == "" {
		return "", "", 0, fmt.Errorf("%q has no host", redactURL(s))
	}
	if u.User != nil {
		return "", "", 0, fmt.Errorf("%q: user info is not used by Consul; use token", redactURL(s))
	}
	if u.Path != "" && u.Path != "/" || u.RawQuery != "" || u.Fragment != "" {
		return "", "", 0, fmt.Errorf("%q: a Consul address has no path, query or fragment", s)
	}
	port = DefaultPort
	if p := u.Port(); p != "" {
		if port, err = parsePort(p); err != nil {
			return "", "", 0, fmt.Errorf("%q: %v", s, err)
		}
	}
	return u.Scheme, u.Hostname(), port, nil
}

func redactURL(s string) string {
	u, err := url.Parse(strings.TrimSpace(s))
	if err != nil {
		return s
	}
	return u.Redacted()
}

func parsePort(s string) (int, error) {
	p, err := strconv.Atoi(s)
	if err != nil || p < 1 || p > 65535 {
		return 0, fmt.Errorf("port %q is not a number from 1 to 65535", s)
	}
	return p, nil
}

func decodeString(path string, v any, errs *sdk.ConfigError) string {
	s, ok := v.(string)
	if !ok {
		errs.Add(path, "must be a string, got %s", jsonType(v))
	}
	return s
}

// decodeList takes a list of strings or one comma-separated string (what an
// environment variable carries).
func decodeList(path string, v any, errs *sdk.ConfigError) []string {
	var out []string
	switch v := v.(type) {
	case string:
		for _, s := range strings.Split(v, ",") {
			if s = strings.TrimSpace(s); s != "" {
				out = append(out, s)
			}
		}
	case []any:
		for i, item := range v {
			s, ok := item.(string)
			if !ok {
				errs.Add(fmt.Sprintf("%s[%d]", path, i), "must be a string, got %s", jsonType(item))
				continue
			}
			out = append(out, s)
		}
	default:
		errs.Add(path, "must be a list of strings or a comma-separated string, got %s", jsonType(v))
	}
	return out
}

// decodeBool takes a boolean, or a string Patroni's parse_bool accepts.
func decodeBool(path string, v any, errs *sdk.ConfigError) bool {
	switch v := v.(type) {
	case bool:
		return v
	case string:
		switch strings.ToLower(strings.TrimSpace(v)) {
		case "true", "yes", "on", "1", "y", "t":
			return true
		case "false", "no", "off", "0", "n", "f":
			return false
		}
	}
	errs.Add(path, "must be true or false, got %s", jsonType(v))
	return false
}

func decodePort(path string, v any, errs *sdk.ConfigError) int {
	var s string
	switch v := v.(type) {
	case json.Number:
		s = v.String()
	case string:
		s = v
	default:
		errs.Add(path, "must be a port number, got %s", jsonType(v))
		return DefaultPort
	}
	p, err := parsePort(s)
	if err != nil {
		errs.Add(path, "%v", err)
		return DefaultPort
	}
	return p
}

// decodeDuration takes a duration string as Consul reads it ("5s",
// "1m30s") or a number of seconds.
func decodeDuration(path string, v any, errs *sdk.ConfigError) time.Duration {
	switch v := v.(type) {
	case json.Number:
		f, err := v.Float64()
		if err != nil || f <= 0 || f > math.MaxInt64/float64(time.Second) {
			errs.Add(path, "must be a positive number of seconds or a duration such as \"5s\", got %s", v)
			return 0
		}
		return time.Duration(f * float64(time.Second))
	case string:
		d, err := time.ParseDuration(strings.TrimSpace(v))
		if err != nil {
			errs.Add(path, "must be a duration such as \"5s\": %v", err)
			return 0
		}
		return d
	}
	errs.Add(path, "must be a duration such as \"5s\", got %s", jsonType(v))
	return 0
}

func jsonType(v any) string {
	switch v := v.(type) {
	case nil:
		return "null"
	case string:
		return fmt.Sprintf("string %q", v)
	case bool:
		return fmt.Sprintf("boolean %v", v)
	case json.Number:
		return "number " + v.String()
	case []any:
		return "a list"
	case map[string]any:
		return "a table"
	}
	return fmt.Sprintf("%T", v)
}

// tlsConfig loads the certificate files for https. It returns nil for
// http; problems with the files come back as an *sdk.ConfigError.
func (c *Config) tlsConfig() (*tls.Config, error) {
	if c.Scheme != schemeHTTPS {
		return nil, nil
	}
	errs := &sdk.ConfigError{}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: c.Host}
	// Patroni: a CA file turns verification on even with verify = false.
	cfg.InsecureSkipVerify = !c.Verify && c.CACert == ""
	if c.CACert != "" {
		pem, err := os.ReadFile(c.CACert)
		if err != nil {
			errs.Add("cacert", "%v", err)
		} else {
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				errs.Add("cacert", "%s holds no PEM certificate", c.CACert)
			}
			cfg.RootCAs = pool
		}
	}
	if c.Cert != "" {
		keyFile := c.Key
		if keyFile == "" {
			// Patroni: the key may sit in the certificate file.
			keyFile = c.Cert
		}
		pair, err := tls.LoadX509KeyPair(c.Cert, keyFile)
		switch {
		case err == nil:
			cfg.Certificates = []tls.Certificate{pair}
		case c.Key == "":
			errs.Add("key", "not set, and cert %s holds no usable private key: %v", c.Cert, err)
		default:
			errs.Add("cert", "loading client certificate %s with key %s: %v", c.Cert, c.Key, err)
		}
	}
	if err := errs.OrNil(); err != nil {
		return nil, err
	}
	return cfg, nil
}
