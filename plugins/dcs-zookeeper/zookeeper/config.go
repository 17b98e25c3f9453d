package zookeeper

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"

	"github.com/go-zookeeper/zk"

	"github.com/custos-ha/custos/plugin/sdk/section"
)

// defaultPort is ZooKeeper's client port, used for a host given without
// one (as kazoo, Patroni's client, does).
const defaultPort = "2181"

// Config is the parsed [dcs.zookeeper] section. The key names are Patroni's.
type Config struct {
	// Hosts are the servers as host:port.
	Hosts []string
	// UseSSL turns on TLS to the servers.
	UseSSL bool
	// TLS names the CA, client certificate and key files (cacert, cert, key;
	// the key is required with the certificate) and the key's key_password.
	TLS section.TLS
	// Verify checks the servers' certificates (default true).
	Verify bool
	// ACL is set on every znode the plugin creates; empty means world:anyone
	// with all permissions (ZooKeeper's open ACL).
	ACL []zk.ACL
	// Auth lists the credentials added to every session, in key order.
	Auth []Credential
}

// Credential is one auth_data entry: a scheme and its credential.
type Credential struct {
	Scheme string
	Secret section.Secret
}

// permissions maps Patroni's set_acls permission names onto ZooKeeper's.
var permissions = map[string]int32{
	"READ":   zk.PermRead,
	"WRITE":  zk.PermWrite,
	"CREATE": zk.PermCreate,
	"DELETE": zk.PermDelete,
	"ADMIN":  zk.PermAdmin,
	"ALL":    zk.PermAll,
}

// parseConfig decodes and checks a section without touching files or the
// network. Every problem is reported with its key path.
func parseConfig(raw []byte) (*Config, error) {
	d, err := section.New(raw)
	if err != nil {
		return nil, err
	}
	cfg := &Config{Verify: true}
	if v, ok := d.Value("hosts"); ok {
		cfg.Hosts = parseHosts(d, v)
	} else {
		d.Add("hosts", "is required: the ZooKeeper servers as a list of host:port or a comma-separated string")
	}
	d.Bool("use_ssl", &cfg.UseSSL)
	d.Bool("verify", &cfg.Verify)
	d.TLS(&cfg.TLS)
	d.String("key_password", (*string)(&cfg.TLS.KeyPassword))

	// TLS settings only mean something with use_ssl; say so instead of
	// ignoring them.
	if !cfg.UseSSL && !d.Failed("use_ssl") {
		for _, k := range []string{"cacert", "cert", "key", "key_password", "verify"} {
			if d.Has(k) {
				d.Add(k, "has no effect unless use_ssl is true")
			}
		}
	}
	if cfg.TLS.Cert != "" && cfg.TLS.Key == "" {
		d.Add("key", "is required with cert")
	}
	if cfg.TLS.KeyPassword != "" && cfg.TLS.Key == "" {
		d.Add("key_password", "needs key")
	}

	if v, ok := d.Value("set_acls"); ok {
		cfg.ACL = parseACLs(d, v)
	}
	if v, ok := d.Value("auth_data"); ok {
		cfg.Auth = parseAuth(d, v)
	}
	if err := d.Err(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// parseHosts accepts a list of host:port strings or one comma-separated
// string, as Patroni does.
func parseHosts(d *section.Decoder, v any) []string {
	var list, paths []string
	switch x := v.(type) {
	case string:
		list = strings.Split(x, ",")
		for range list {
			paths = append(paths, "hosts")
		}
	case []any:
		for i, item := range x {
			s, ok := item.(string)
			if !ok {
				d.Add(fmt.Sprintf("hosts[%d]", i), "must be a host:port string, got %s", section.Describe(item))
				continue
			}
			list = append(list, s)
			paths = append(paths, fmt.Sprintf("hosts[%d]", i))
		}
		if d.Failed("hosts") {
			return nil
		}
	default:
		d.Add("hosts", "must be a list of host:port or a comma-separated string, got %s", section.Describe(v))
		return nil
	}
	if strings.TrimSpace(strings.Join(list, "")) == "" {
		d.Add("hosts", "names no server")
		return nil
	}
	hosts := make([]string, 0, len(list))
	for i, h := range list {
		addr, err := parseHost(h)
		if err != nil {
			d.Add(paths[i], "%q: %v", strings.TrimSpace(h), err)
			continue
		}
		hosts = append(hosts, addr)
	}
	return hosts
}

// parseHost checks one server address and returns it as host:port.
func parseHost(s string) (string, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return "", errors.New("empty server address")
	}
	if strings.Contains(s, "/") {
		return "", errors.New("a chroot path in hosts is not supported: put it in front of the namespace instead")
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		switch {
		case !strings.Contains(s, ":"):
			host, port = s, defaultPort
		case strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]"):
			host, port = s[1:len(s)-1], defaultPort
		default:
			return "", errors.New("not host:port (write IPv6 addresses as [addr]:port)")
		}
	}
	if host == "" {
		return "", errors.New("the host is missing")
	}
	if strings.ContainsAny(host, " \t[]") {
		return "", fmt.Errorf("%q is not a host name or address", host)
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 1 || p > 65535 {
		return "", fmt.Errorf("port %q is not a number from 1 to 65535", port)
	}
	return net.JoinHostPort(host, port), nil
}

// parseACLs reads set_acls: {"<x509 principal>": ["READ", "WRITE", ...]},
// Patroni's form; each entry becomes an x509-scheme ACL.
func parseACLs(d *section.Decoder, v any) []zk.ACL {
	m, ok := v.(map[string]any)
	if !ok {
		d.Add("set_acls", "must be a table of principal = [permissions], got %s", section.Describe(v))
		return nil
	}
	principals := make([]string, 0, len(m))
	for p := range m {
		principals = append(principals, p)
	}
	sort.Strings(principals)
	var acls []zk.ACL
	for _, principal := range principals {
		path := "set_acls." + principal
		if principal == "" {
			d.Add("set_acls", "a principal is empty")
			continue
		}
		perms, ok := m[principal].([]any)
		if !ok {
			d.Add(path, "must be a list of permissions, got %s", section.Describe(m[principal]))
			continue
		}
		if len(perms) == 0 {
			d.Add(path, "lists no permission (use READ, WRITE, CREATE, DELETE, ADMIN or ALL)")
			continue
		}
		var mask int32
		ok = true
		for _, p := range perms {
			name := fmt.Sprint(p)
			bit, known := permissions[strings.ToUpper(strings.TrimSpace(name))]
			if _, isString := p.(string); !known || !isString {
				d.Add(path, "unknown permission %q (use READ, WRITE, CREATE, DELETE, ADMIN or ALL)", name)
				ok = false
				continue
			}
			mask |= bit
		}
		if ok {
			acls = append(acls, zk.ACL{Perms: mask, Scheme: "x509", ID: principal})
		}
	}
	return acls
}

// parseAuth reads auth_data: {"<scheme>": "<credential>"}, Patroni's form.
func parseAuth(d *section.Decoder, v any) []Credential {
	m, ok := v.(map[string]any)
	if !ok {
		d.Add("auth_data", "must be a table of scheme = credential, got %s", section.Describe(v))
		return nil
	}
	schemes := make([]string, 0, len(m))
	for s := range m {
		schemes = append(schemes, s)
	}
	sort.Strings(schemes)
	var creds []Credential
	for _, scheme := range schemes {
		path := "auth_data." + scheme
		secret, ok := m[scheme].(string)
		if !ok {
			d.Add(path, "must be a string, got %s", section.Describe(m[scheme]))
			continue
		}
		switch {
		case scheme == "":
			d.Add("auth_data", "a scheme is empty")
		case strings.EqualFold(scheme, "sasl"):
			d.Add(path, "SASL (Kerberos/DIGEST-MD5) needs a SASL handshake, which the plugin's client (github.com/go-zookeeper/zk) does not speak; use the digest scheme or TLS client certificates")
		case secret == "":
			d.Add(path, "the credential is empty")
		default:
			creds = append(creds, Credential{Scheme: scheme, Secret: section.Secret(secret)})
		}
	}
	return creds
}

// tlsConfig loads the certificate files named by the section. Problems are
// reported as a *sdk.ConfigError naming the key.
func (c *Config) tlsConfig() (*tls.Config, error) {
	if !c.UseSSL {
		return nil, nil
	}
	o := c.TLS
	// verify=false is the operator's explicit choice, as in Patroni.
	o.SkipVerify = !c.Verify
	return o.Config()
}
