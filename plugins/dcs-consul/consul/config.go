package consul

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/custos-ha/custos/plugin/sdk/section"
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
	Token section.Secret
	// Verify checks the agent's certificate (https); a CA file turns it on
	// whatever Verify says, as in Patroni.
	Verify bool
	// TLS names the CA, client certificate and key files (cacert, cert,
	// key); the key may sit in the certificate file.
	TLS section.TLS
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

// Address is the agent's "host:port".
func (c *Config) Address() string { return net.JoinHostPort(c.Host, strconv.Itoa(c.Port)) }

// ParseConfig decodes and checks the JSON of the section without touching
// the network or the file system. Every problem is reported, each with its
// key path, in one *sdk.ConfigError. An empty section is valid: it
// addresses the local agent at 127.0.0.1:8500 over http.
func ParseConfig(data []byte) (*Config, error) {
	d, err := section.New(data)
	if err != nil {
		return nil, err
	}
	c := &Config{Verify: true, ServiceCheckInterval: DefaultServiceCheckInterval}
	d.String("host", &c.Host)
	d.String("url", &c.URL)
	d.Port("port", &c.Port)
	d.String("scheme", &c.Scheme)
	d.String("token", (*string)(&c.Token))
	d.Bool("verify", &c.Verify)
	d.TLS(&c.TLS)
	d.String("dc", &c.DC)
	d.Strings("checks", &c.Checks)
	d.Strings("service_tags", &c.ServiceTags)
	d.String("consistency", &c.Consistency)
	d.Bool("register_service", &c.RegisterService)
	d.Duration("service_check_interval", &c.ServiceCheckInterval)
	d.String("service_check_tls_server_name", &c.ServiceCheckTLSServerName)
	c.hasServiceCheckTLSServerName = d.Has("service_check_tls_server_name")
	c.check(d)
	if err := d.Err(); err != nil {
		return nil, err
	}
	return c, nil
}

// check validates the decoded values against each other and settles the
// address.
func (c *Config) check(d *section.Decoder) {
	c.address(d)
	switch c.Consistency {
	case "":
		if d.Has("consistency") {
			d.Add("consistency", "must be default, consistent or stale")
		}
		c.Consistency = ConsistencyConsistent
	case ConsistencyDefault, ConsistencyConsistent, ConsistencyStale:
	default:
		d.Add("consistency", "must be default, consistent or stale, got %q", c.Consistency)
	}
	if strings.ContainsAny(c.DC, "/?#& \t") {
		d.Add("dc", "%q is not a datacenter name", c.DC)
	}
	for i, id := range c.Checks {
		if strings.TrimSpace(id) == "" && !d.Failed("checks") {
			d.Add(fmt.Sprintf("checks[%d]", i), "empty check ID")
		}
	}
	for i, tag := range c.ServiceTags {
		if strings.TrimSpace(tag) == "" && !d.Failed("service_tags") {
			d.Add(fmt.Sprintf("service_tags[%d]", i), "empty tag")
		}
	}
}

// address settles Scheme, Host and Port with Patroni's precedence: url
// (scheme, host and port from it, port 8500 if it has none); else host
// ("host[:port]"; an explicit port key wins over the port in host); else
// 127.0.0.1; port 8500; scheme http. Both url and host are checked even
// when url wins, so that a typo never hides behind the precedence.
func (c *Config) address(d *section.Decoder) {
	hasPort := d.Has("port")
	if !hasPort {
		c.Port = DefaultPort
	}
	switch c.Scheme {
	case "":
		if d.Has("scheme") {
			d.Add("scheme", "must be http or https")
		}
		c.Scheme = schemeHTTP
	case schemeHTTP, schemeHTTPS:
	default:
		d.Add("scheme", "must be http or https, got %q", c.Scheme)
	}
	host, hostPort := DefaultHost, 0
	if d.Has("host") && !d.Failed("host") {
		h, p, err := section.HostPort(c.Host)
		if err != nil {
			d.Add("host", "%v", err)
		}
		host, hostPort = h, p
	}
	if d.Has("url") && !d.Failed("url") {
		scheme, h, p, err := parseURL(c.URL)
		if err != nil {
			d.Add("url", "%v", err)
			return
		}
		c.Scheme, c.Host, c.Port = scheme, h, p
		c.URL = section.RedactURL(c.URL)
		return
	}
	c.Host = host
	if !hasPort && hostPort != 0 {
		c.Port = hostPort
	}
}

// parseURL reads "http(s)://host[:port]".
func parseURL(s string) (scheme, host string, port int, err error) {
	u, err := url.Parse(strings.TrimSpace(s))
	if err != nil {
		return "", "", 0, fmt.Errorf("not a URL: %v", err)
	}
	if u.Scheme != schemeHTTP && u.Scheme != schemeHTTPS {
		return "", "", 0, fmt.Errorf("%q: scheme must be http or https", section.RedactURL(s))
	}
	if u.Hostname() == "" {
		return "", "", 0, fmt.Errorf("%q has no host", section.RedactURL(s))
	}
	if u.User != nil {
		return "", "", 0, fmt.Errorf("%q: user info is not used by Consul; use token", section.RedactURL(s))
	}
	if u.Path != "" && u.Path != "/" || u.RawQuery != "" || u.Fragment != "" {
		return "", "", 0, fmt.Errorf("%q: a Consul address has no path, query or fragment", s)
	}
	port = DefaultPort
	if p := u.Port(); p != "" {
		if port, err = section.ParsePort(p); err != nil {
			return "", "", 0, fmt.Errorf("%q: %v", s, err)
		}
	}
	return u.Scheme, u.Hostname(), port, nil
}

// tlsConfig loads the certificate files for https. It returns nil for
// http; problems with the files come back as an *sdk.ConfigError.
func (c *Config) tlsConfig() (*tls.Config, error) {
	if c.Scheme != schemeHTTPS {
		return nil, nil
	}
	o := c.TLS
	o.ServerName = c.Host
	// Patroni: a CA file turns verification on even with verify = false.
	o.SkipVerify = !c.Verify && o.CACert == ""
	return o.Config()
}
