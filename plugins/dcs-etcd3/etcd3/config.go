package etcd3

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"

	"github.com/custos-ha/custos/plugin/sdk/section"
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
	Password section.Secret
	// TLS names the CA, client certificate and key files (cacert, cert,
	// key); the key may sit in the certificate file, as in Patroni.
	TLS section.TLS

	// static are the endpoint URLs from proxy, url, urls, hosts or host.
	static []string
	// staticFrom names the key static came from.
	staticFrom string
	// urlUser and urlPassword come from the user info of url or proxy.
	urlUser     string
	urlPassword section.Secret
}

// String renders the configuration without its passwords.
func (c Config) String() string {
	type plain Config // drops the methods
	p := plain(c)
	if p.urlPassword != "" {
		p.urlPassword = "<redacted>"
	}
	return fmt.Sprintf("%+v", p)
}

// GoString renders the configuration without its passwords.
func (c Config) GoString() string {
	type plain Config
	p := plain(c)
	if p.urlPassword != "" {
		p.urlPassword = "<redacted>"
	}
	return fmt.Sprintf("%#v", p)
}

// ParseConfig decodes and checks the JSON of the section without touching
// the network or the file system. Every problem is reported, each with its
// key path, in one *sdk.ConfigError.
func ParseConfig(data []byte) (*Config, error) {
	d, err := section.New(data)
	if err != nil {
		return nil, err
	}
	c := &Config{Port: DefaultPort}
	d.Strings("hosts", &c.Hosts)
	d.String("host", &c.Host)
	d.Port("port", &c.Port)
	d.String("url", &c.URL)
	d.Strings("urls", &c.URLs)
	d.String("proxy", &c.Proxy)
	d.Bool("use_proxies", &c.UseProxies)
	d.String("srv", &c.SRV)
	d.String("srv_suffix", &c.SRVSuffix)
	d.String("protocol", &c.Protocol)
	d.String("username", &c.Username)
	d.String("password", (*string)(&c.Password))
	d.TLS(&c.TLS)
	c.check(d)
	if err := d.Err(); err != nil {
		return nil, err
	}
	return c, nil
}

// check validates the decoded values against each other and computes the
// static endpoints.
func (c *Config) check(d *section.Decoder) {
	switch c.Protocol {
	case "":
		c.Protocol = protocolHTTP
		if d.Has("protocol") {
			d.Add("protocol", "must be http or https")
		}
	case protocolHTTP, protocolHTTPS:
	default:
		d.Add("protocol", "must be http or https, got %q", c.Protocol)
	}

	// Every endpoint source is checked even when a higher one wins, so that
	// a typo never hides behind the precedence.
	hosts := make([]string, 0, len(c.Hosts))
	for i, h := range c.Hosts {
		if ep, err := hostEndpoint(c.Protocol, h, c.Port); err != nil {
			d.Add(fmt.Sprintf("hosts[%d]", i), "%v", err)
		} else {
			hosts = append(hosts, ep)
		}
	}
	if d.Has("hosts") && len(c.Hosts) == 0 && !d.Failed("hosts") {
		d.Add("hosts", "is empty")
	}
	var host []string
	if d.Has("host") && !d.Failed("host") {
		if ep, err := hostEndpoint(c.Protocol, c.Host, c.Port); err != nil {
			d.Add("host", "%v", err)
		} else {
			host = []string{ep}
		}
	}
	var single, proxy []string
	if d.Has("url") && !d.Failed("url") {
		if ep, user, pass, err := urlEndpoint(c.URL); err != nil {
			d.Add("url", "%v", err)
		} else {
			single = []string{ep}
			c.urlUser, c.urlPassword = user, section.Secret(pass)
			c.URL = section.RedactURL(c.URL)
		}
	}
	urls := make([]string, 0, len(c.URLs))
	for i, u := range c.URLs {
		ep, user, _, err := urlEndpoint(u)
		switch {
		case err != nil:
			d.Add(fmt.Sprintf("urls[%d]", i), "%v", err)
		case user != "":
			d.Add(fmt.Sprintf("urls[%d]", i), "must not carry credentials; use username and password")
		default:
			urls = append(urls, ep)
		}
	}
	if d.Has("urls") && len(c.URLs) == 0 && !d.Failed("urls") {
		d.Add("urls", "is empty")
	}
	if d.Has("proxy") && !d.Failed("proxy") {
		if ep, user, pass, err := urlEndpoint(c.Proxy); err != nil {
			d.Add("proxy", "%v", err)
		} else {
			proxy = []string{ep}
			c.urlUser, c.urlPassword = user, section.Secret(pass)
			c.Proxy = section.RedactURL(c.Proxy)
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

	if d.Has("srv") && !d.Failed("srv") {
		if err := checkDomain(c.SRV); err != nil {
			d.Add("srv", "%v", err)
		}
	}
	if c.SRVSuffix != "" {
		if c.SRV == "" {
			d.Add("srv_suffix", "needs srv")
		} else if strings.ContainsAny(c.SRVSuffix, "./: \t") {
			d.Add("srv_suffix", "must be one DNS label, got %q", c.SRVSuffix)
		}
	}
	if c.SRV == "" && len(c.static) == 0 && !hasEndpointProblem(d) {
		d.Add("", "no etcd endpoint: set hosts, host, url, proxy or srv")
	}

	if c.Username != "" && c.Password == "" {
		d.Add("password", "must be set with username")
	}
	if c.Password != "" && c.Username == "" {
		d.Add("username", "must be set with password")
	}
}

func hasEndpointProblem(d *section.Decoder) bool {
	for _, k := range []string{"hosts", "host", "url", "urls", "proxy", "srv", "port", "protocol"} {
		if d.Failed(k) {
			return true
		}
	}
	return false
}

// hostEndpoint turns "host[:port]" into an endpoint URL.
func hostEndpoint(protocol, s string, defaultPort int) (string, error) {
	host, port, err := section.HostPort(s)
	if err != nil {
		return "", err
	}
	if port == 0 {
		port = defaultPort
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
		if port, err = section.ParsePort(p); err != nil {
			return "", "", "", fmt.Errorf("%q: %v", s, err)
		}
	}
	if u.User != nil {
		user = u.User.Username()
		password, _ = u.User.Password()
	}
	return u.Scheme + "://" + net.JoinHostPort(u.Hostname(), strconv.Itoa(port)), user, password, nil
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
	return c.TLS.Config()
}
