package etcd3

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"

	"github.com/custos-ha/custos/plugin/sdk"
)

// DefaultPort is the port of a host given without one, as in Patroni.
const DefaultPort = 2379

// Protocols of the endpoints.
const (
	protocolHTTP  = "http"
	protocolHTTPS = "https"
)

// Config is the [dcs.etcd3] section, with Patroni's etcd3 key names. Build
// it with ParseConfig; it prints without its password.
type Config struct {
	// Hosts are "host[:port]" entries (a list, or one comma-separated
	// string in the section).
	Hosts []string
	// Host is one "host[:port]".
	Host string
	// Port is the port of Hosts and Host entries given without one.
	Port int
	// URL is one endpoint URL, "http(s)://[user:password@]host[:port]".
	URL string
	// URLs are endpoint URLs (a custos extension of url).
	URLs []string
	// Proxy is the URL of an etcd gRPC proxy; it is used alone.
	Proxy string
	// UseProxies is accepted for Patroni compatibility. custos never
	// replaces the configured endpoints with the cluster's member list, so
	// it always behaves as Patroni does with use_proxies on.
	UseProxies bool
	// SRV is a DNS domain whose SRV records name the endpoints.
	SRV string
	// SRVSuffix is appended to the SRV service names (_etcd-client-<suffix>).
	SRVSuffix string
	// Protocol is http (the default) or https for Hosts, Host and the SRV
	// fallback.
	Protocol string
	Username string
	Password Secret
	// CACert verifies the server certificates (the system roots when empty).
	CACert string
	// Cert is the client certificate file; Key is its private key file,
	// which may be omitted when Cert holds the key too (as in Patroni).
	Cert string
	Key  string

	// static are the endpoint URLs from proxy, url, urls, hosts or host.
	static []string
	// staticFrom names the key static came from.
	staticFrom string
	// urlUser and urlPassword come from the user info of url or proxy.
	urlUser     string
	urlPassword Secret
}

// Secret is a string that never prints or marshals its value.
type Secret string

// String implements fmt.Stringer.
func (Secret) String() string { return redacted }

// GoString implements fmt.GoStringer.
func (Secret) GoString() string { return `"<redacted>"` }

// MarshalJSON implements json.Marshaler.
func (Secret) MarshalJSON() ([]byte, error) { return []byte(`"<redacted>"`), nil }

// String renders the configuration without its passwords.
func (c Config) String() string {
	type plain Config // drops the methods
	p := plain(c)
	if p.urlPassword != "" {
		p.urlPassword = Secret(redacted)
	}
	return fmt.Sprintf("%+v", p)
}

// GoString renders the configuration without its passwords.
func (c Config) GoString() string {
	type plain Config
	p := plain(c)
	if p.urlPassword != "" {
		p.urlPassword = Secret(redacted)
	}
	return fmt.Sprintf("%#v", p)
}

const redacted = "<redacted>"

// redactURL hides the password of a URL that parsed.
func redactURL(s string) string {
	u, err := url.Parse(strings.TrimSpace(s))
	if err != nil {
		return s
	}
	return u.Redacted()
}

// configKeys are the keys of the section and how each is decoded.
var configKeys = map[string]func(c *Config, path string, v any, errs *sdk.ConfigError){
	"hosts":       func(c *Config, p string, v any, e *sdk.ConfigError) { c.Hosts = decodeList(p, v, e) },
	"host":        func(c *Config, p string, v any, e *sdk.ConfigError) { c.Host = decodeString(p, v, e) },
	"port":        func(c *Config, p string, v any, e *sdk.ConfigError) { c.Port = decodePort(p, v, e) },
	"url":         func(c *Config, p string, v any, e *sdk.ConfigError) { c.URL = decodeString(p, v, e) },
	"urls":        func(c *Config, p string, v any, e *sdk.ConfigError) { c.URLs = decodeList(p, v, e) },
	"proxy":       func(c *Config, p string, v any, e *sdk.ConfigError) { c.Proxy = decodeString(p, v, e) },
	"use_proxies": func(c *Config, p string, v any, e *sdk.ConfigError) { c.UseProxies = decodeBool(p, v, e) },
	"srv":         func(c *Config, p string, v any, e *sdk.ConfigError) { c.SRV = decodeString(p, v, e) },
	"srv_suffix":  func(c *Config, p string, v any, e *sdk.ConfigError) { c.SRVSuffix = decodeString(p, v, e) },
	"protocol":    func(c *Config, p string, v any, e *sdk.ConfigError) { c.Protocol = decodeString(p, v, e) },
	"username":    func(c *Config, p string, v any, e *sdk.ConfigError) { c.Username = decodeString(p, v, e) },
	"password":    func(c *Config, p string, v any, e *sdk.ConfigError) { c.Password = Secret(decodeString(p, v, e)) },
	"cacert":      func(c *Config, p string, v any, e *sdk.ConfigError) { c.CACert = decodeString(p, v, e) },
	"cert":        func(c *Config, p string, v any, e *sdk.ConfigError) { c.Cert = decodeString(p, v, e) },
	"key":         func(c *Config, p string, v any, e *sdk.ConfigError) { c.Key = decodeString(p, v, e) },
}

// ParseConfig decodes and checks the JSON of the section without touching
// the network or the file system. Every problem is reported, each with its
// key path, in one *sdk.ConfigError.
func ParseConfig(data []byte) (*Config, error) {
	errs := &sdk.ConfigError{}
	c := &Config{Port: DefaultPort}
	raw := map[string]any{}
	if len(bytes.TrimSpace(data)) > 0 && string(bytes.TrimSpace(data)) != "null" {
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

// check validates the decoded values against each other and computes the
// static endpoints.
func (c *Config) check(raw map[string]any, errs *sdk.ConfigError) {
	_, hasProtocol := raw["protocol"]
	switch c.Protocol {
	case "":
		c.Protocol = protocolHTTP
		if hasProtocol {
			errs.Add("protocol", "must be http or https")
		}
	case protocolHTTP, protocolHTTPS:
	default:
		errs.Add("protocol", "must be http or https, got %q", c.Protocol)
	}

	// Every endpoint source is checked even when a higher one wins, so that
	// a typo never hides behind the precedence.
	hosts := make([]string, 0, len(c.Hosts))
	for i, h := range c.Hosts {
		if ep, err := hostEndpoint(c.Protocol, h, c.Port); err != nil {
			errs.Add(fmt.Sprintf("hosts[%d]", i), "%v", err)
		} else {
			hosts = append(hosts, ep)
		}
	}
	if _, ok := raw["hosts"]; ok && len(c.Hosts) == 0 && !hasProblem(errs, "hosts") {
		errs.Add("hosts", "is empty")
	}
	var host []string
	if _, ok := raw["host"]; ok && !hasProblem(errs, "host") {
		if ep, err := hostEndpoint(c.Protocol, c.Host, c.Port); err != nil {
			errs.Add("host", "%v", err)
		} else {
			host = []string{ep}
		}
	}
	var single, proxy []string
	if _, ok := raw["url"]; ok && !hasProblem(errs, "url") {
		if ep, user, pass, err := urlEndpoint(c.URL); err != nil {
			errs.Add("url", "%v", err)
		} else {
			single = []string{ep}
			c.urlUser, c.urlPassword = user, Secret(pass)
			c.URL = redactURL(c.URL)
		}
	}
	urls := make([]string, 0, len(c.URLs))
	for i, u := range c.URLs {
		ep, user, _, err := urlEndpoint(u)
		switch {
		case err != nil:
			errs.Add(fmt.Sprintf("urls[%d]", i), "%v", err)
		case user != "":
			errs.Add(fmt.Sprintf("urls[%d]", i), "must not carry credentials; use username and password")
		default:
			urls = append(urls, ep)
		}
	}
	if _, ok := raw["urls"]; ok && len(c.URLs) == 0 && !hasProblem(errs, "urls") {
		errs.Add("urls", "is empty")
	}
	if _, ok := raw["proxy"]; ok && !hasProblem(errs, "proxy") {
		if ep, user, pass, err := urlEndpoint(c.Proxy); err != nil {
			errs.Add("proxy", "%v", err)
		} else {
			proxy = []string{ep}
			c.urlUser, c.urlPassword = user, Secret(pass)
			c.Proxy = redactURL(c.Proxy)
		}
	}
	// Patroni's precedence: proxy, url, hosts, host (urls sits with url).
	for _, src := range []struct {
		key string
		eps []string
	}{{"proxy", proxy}, {"url", single}, {"urls", urls}, {"hosts", hosts}, {"host", host}} {
		if len(src.eps) > 0 {
			c.static, c.staticFrom = src.eps, src.key
			break
		}
	}

	if _, ok := raw["srv"]; ok && !hasProblem(errs, "srv") {
		if err := checkDomain(c.SRV); err != nil {
			errs.Add("srv", "%v", err)
		}
	}
	if c.SRVSuffix != "" {
		if c.SRV == "" {
			errs.Add("srv_suffix", "needs srv")
		} else if strings.ContainsAny(c.SRVSuffix, "./: \t") {
			errs.Add("srv_suffix", "must be one DNS label, got %q", c.SRVSuffix)
		}
	}
	if c.SRV == "" && len(c.static) == 0 && !hasEndpointProblem(errs) {
		errs.Add("", "no etcd endpoint: set hosts, host, url, proxy or srv")
	}

	if c.Username != "" && c.Password == "" {
		errs.Add("password", "must be set with username")
	}
	if c.Password != "" && c.Username == "" {
		errs.Add("username", "must be set with password")
	}
	if c.Key != "" && c.Cert == "" {
		errs.Add("cert", "must be set with key")
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

func hasEndpointProblem(errs *sdk.ConfigError) bool {
	for _, k := range []string{"hosts", "host", "url", "urls", "proxy", "srv", "port", "protocol"} {
		if hasProblem(errs, k) {
			return true
		}
	}
	return false
}

// hostEndpoint turns "host[:port]" into an endpoint URL.
func hostEndpoint(protocol, s string, defaultPort int) (string, error) {
	s = strings.TrimSpace(s)
	switch {
	case s == "":
		return "", errors.New("empty host")
	case strings.Contains(s, "://"):
		return "", fmt.Errorf("%q must be host:port, not a URL (URLs go in url or urls)", s)
	case strings.ContainsAny(s, "/ \t@?#"):
		return "", fmt.Errorf("%q is not a host:port", s)
	}
	host, portStr, err := net.SplitHostPort(s)
	if err != nil {
		// No port: a name, an IPv4 address or a bare IPv6 address.
		if ip := net.ParseIP(strings.Trim(s, "[]")); ip != nil {
			return protocol + "://" + net.JoinHostPort(ip.String(), strconv.Itoa(defaultPort)), nil
		}
		if strings.ContainsAny(s, ":[]") {
			return "", fmt.Errorf("%q is not a host:port", s)
		}
		return protocol + "://" + net.JoinHostPort(s, strconv.Itoa(defaultPort)), nil
	}
	if host == "" {
		return "", fmt.Errorf("%q has no host", s)
	}
	port, err := parsePort(portStr)
	if err != nil {
		return "", fmt.Errorf("%q: %v", s, err)
	}
	return protocol + "://" + net.JoinHostPort(host, strconv.Itoa(port)), nil
}

// urlEndpoint checks an endpoint URL and returns it without user info,
// with the default port made explicit, plus the user info.
func urlEndpoint(s string) (endpoint, user, password string, err error) {
	u, err := url.Parse(strings.TrimSpace(s))
	if err != nil {
		return "", "", "", fmt.Errorf("not a URL: %v", err)
	}
	if u.Scheme != protocolHTTP && u.Scheme != protocolHTTPS {
		return "", "", "", fmt.Errorf("%q: scheme must be http or https", s)
	}
	if u.Hostname() == "" {
		return "", "", "", fmt.Errorf("%q has no host", s)
	}
	if u.Path != "" && u.Path != "/" || u.RawQuery != "" || u.Fragment != "" {
		return "", "", "", fmt.Errorf("%q: an etcd endpoint has no path, query or fragment", s)
	}
	port := DefaultPort
	if p := u.Port(); p != "" {
		if port, err = parsePort(p); err != nil {
			return "", "", "", fmt.Errorf("%q: %v", s, err)
		}
	}
	if u.User != nil {
		user = u.User.Username()
		password, _ = u.User.Password()
	}
	return u.Scheme + "://" + net.JoinHostPort(u.Hostname(), strconv.Itoa(port)), user, password, nil
}

func parsePort(s string) (int, error) {
	p, err := strconv.Atoi(s)
	if err != nil || p < 1 || p > 65535 {
		return 0, fmt.Errorf("port %q is not a number from 1 to 65535", s)
	}
	return p, nil
}

func checkDomain(s string) error {
	if s == "" {
		return errors.New("empty domain")
	}
	if strings.ContainsAny(s, "/: \t@") {
		return fmt.Errorf("%q is not a DNS domain", s)
	}
	return nil
}

func decodeString(path string, v any, errs *sdk.ConfigError) string {
	s, ok := v.(string)
	if !ok {
		errs.Add(path, "must be a string, got %s", jsonType(v))
	}
	return s
}

// decodeList takes a list of strings or one comma-separated string.
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

func decodeBool(path string, v any, errs *sdk.ConfigError) bool {
	switch v := v.(type) {
	case bool:
		return v
	case string:
		if b, err := strconv.ParseBool(v); err == nil {
			return b
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

// credentials returns the user name and password to authenticate with:
// the username and password keys, else the user info of url or proxy.
func (c *Config) credentials() (string, string) {
	if c.Username != "" {
		return c.Username, string(c.Password)
	}
	return c.urlUser, string(c.urlPassword)
}

// srvLookup resolves one SRV name; net.Resolver.LookupSRV fits it.
type srvLookup func(ctx context.Context, service, proto, name string) (string, []*net.SRV, error)

// srvServices are the SRV service names Patroni queries, in its order.
// Patroni then also tries _etcd-server-ssl and _etcd-server, which name peer
// URLs and need a call to the v2 members API; custos does not (etcd v3
// clients publish _etcd-client records).
var srvServices = []string{"-client-ssl", "-client", "-ssl", ""}

// endpoints returns the URLs to connect to and where they came from. With
// srv set, the SRV records win and the static endpoints are the fallback,
// as in Patroni.
func (c *Config) endpoints(ctx context.Context, lookup srvLookup) ([]string, string, error) {
	if c.SRV != "" && c.staticFrom != "proxy" {
		for _, svc := range srvServices {
			if c.SRVSuffix != "" {
				svc += "-" + c.SRVSuffix
			}
			name := "_etcd" + svc + "._tcp." + c.SRV
			_, recs, err := lookup(ctx, "", "", name)
			if err != nil || len(recs) == 0 {
				continue
			}
			protocol := protocolHTTP
			if strings.Contains(svc, "-ssl") {
				protocol = protocolHTTPS
			}
			eps := make([]string, 0, len(recs))
			for _, r := range recs {
				eps = append(eps, protocol+"://"+net.JoinHostPort(strings.TrimSuffix(r.Target, "."), strconv.Itoa(int(r.Port))))
			}
			return eps, "srv " + name, nil
		}
		if len(c.static) == 0 {
			return nil, "", fmt.Errorf("no etcd SRV records under %s", c.SRV)
		}
	}
	return c.static, c.staticFrom, nil
}

// tlsConfig loads the certificate files. It returns nil when no endpoint
// uses https; problems with the files come back as an *sdk.ConfigError.
func (c *Config) tlsConfig(endpoints []string) (*tls.Config, error) {
	secure := false
	for _, ep := range endpoints {
		if strings.HasPrefix(ep, protocolHTTPS+"://") {
			secure = true
		}
	}
	if !secure {
		return nil, nil
	}
	errs := &sdk.ConfigError{}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
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
