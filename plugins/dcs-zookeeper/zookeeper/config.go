package zookeeper

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"

	"github.com/go-zookeeper/zk"

	"github.com/custos-ha/custos/plugin/sdk"
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
	// CACert is a PEM file with the CAs that sign the servers' certificates;
	// empty means the system pool.
	CACert string
	// Cert and Key are the client certificate and its key (PEM files).
	Cert string
	Key  string
	// KeyPassword decrypts a legacy PEM-encrypted Key.
	KeyPassword Secret
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
	Secret Secret
}

// Secret is a string that never prints itself.
type Secret string

// String redacts the secret.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return "<redacted>"
}

// GoString redacts the secret in %#v.
func (s Secret) GoString() string { return `"` + s.String() + `"` }

// permissions maps Patroni's set_acls permission names onto ZooKeeper's.
var permissions = map[string]int32{
	"READ":   zk.PermRead,
	"WRITE":  zk.PermWrite,
	"CREATE": zk.PermCreate,
	"DELETE": zk.PermDelete,
	"ADMIN":  zk.PermAdmin,
	"ALL":    zk.PermAll,
}

// configKeys are the keys the section may hold.
var configKeys = []string{"hosts", "use_ssl", "cacert", "cert", "key", "key_password", "verify", "set_acls", "auth_data"}

// parseConfig decodes and checks a section without touching files or the
// network. Every problem is reported with its key path.
func parseConfig(raw []byte) (*Config, error) {
	errs := &sdk.ConfigError{}
	cfg := &Config{Verify: true}
	var fields map[string]json.RawMessage
	if len(bytes.TrimSpace(raw)) > 0 {
		if err := json.Unmarshal(raw, &fields); err != nil {
			errs.Add("", "the section is not a JSON object: %v", err)
			return nil, errs
		}
	}
	var unknown []string
	for k := range fields {
		if !contains(configKeys, k) {
			unknown = append(unknown, k)
		}
	}
	sort.Strings(unknown)
	for _, k := range unknown {
		errs.Add(k, "unknown key (known: %s)", strings.Join(configKeys, ", "))
	}

	if v, ok := fields["hosts"]; ok {
		cfg.Hosts = parseHosts(errs, v)
	} else {
		errs.Add("hosts", "is required: the ZooKeeper servers as a list of host:port or a comma-separated string")
	}
	useSSLValid := decodeField(errs, fields, "use_ssl", "a boolean", &cfg.UseSSL)
	decodeField(errs, fields, "verify", "a boolean", &cfg.Verify)
	decodeField(errs, fields, "cacert", "a file path", &cfg.CACert)
	decodeField(errs, fields, "cert", "a file path", &cfg.Cert)
	decodeField(errs, fields, "key", "a file path", &cfg.Key)
	var keyPassword string
	decodeField(errs, fields, "key_password", "a string", &keyPassword)
	cfg.KeyPassword = Secret(keyPassword)

	// TLS settings only mean something with use_ssl; say so instead of
	// ignoring them.
	if !cfg.UseSSL && useSSLValid {
		for _, k := range []string{"cacert", "cert", "key", "key_password", "verify"} {
			if _, ok := fields[k]; ok {
				errs.Add(k, "has no effect unless use_ssl is true")
			}
		}
	}
	if cfg.Cert != "" && cfg.Key == "" {
		errs.Add("key", "is required with cert")
	}
	if cfg.Key != "" && cfg.Cert == "" {
		errs.Add("cert", "is required with key")
	}
	if cfg.KeyPassword != "" && cfg.Key == "" {
		errs.Add("key_password", "needs key")
	}

	if v, ok := fields["set_acls"]; ok {
		cfg.ACL = parseACLs(errs, v)
	}
	if v, ok := fields["auth_data"]; ok {
		cfg.Auth = parseAuth(errs, v)
	}
	if err := errs.OrNil(); err != nil {
		return nil, err
	}
	return cfg, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// decodeField decodes fields[key] into dst when present; a JSON null leaves
// the default. It reports whether the value (or its absence) was valid.
func decodeField[T any](errs *sdk.ConfigError, fields map[string]json.RawMessage, key, what string, dst *T) bool {
	v, ok := fields[key]
	if !ok || string(bytes.TrimSpace(v)) == "null" {
		return true
	}
	if err := json.Unmarshal(v, dst); err != nil {
		errs.Add(key, "must be %s, got %s", what, jsonKind(v))
		return false
	}
	return true
}

// jsonKind names the JSON type of a value for error messages.
func jsonKind(v json.RawMessage) string {
	v = bytes.TrimSpace(v)
	if len(v) == 0 {
		return "nothing"
	}
	switch v[0] {
	case '"':
		return "a string"
	case '{':
		return "an object"
	case '[':
		return "a list"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	}
	return "a number"
}

// parseHosts accepts a list of host:port strings or one comma-separated
// string, as Patroni does.
func parseHosts(errs *sdk.ConfigError, v json.RawMessage) []string {
	var (
		list  []string
		paths []string
		s     string
	)
	if err := json.Unmarshal(v, &s); err == nil {
		list = strings.Split(s, ",")
		for range list {
			paths = append(paths, "hosts")
		}
	} else if err := json.Unmarshal(v, &list); err == nil {
		for i := range list {
			paths = append(paths, fmt.Sprintf("hosts[%d]", i))
		}
	} else {
		errs.Add("hosts", "must be a list of host:port or a comma-separated string, got %s", jsonKind(v))
		return nil
	}
	if strings.TrimSpace(strings.Join(list, "")) == "" {
		errs.Add("hosts", "names no server")
		return nil
	}
	hosts := make([]string, 0, len(list))
	for i, h := range list {
		addr, err := parseHost(h)
		if err != nil {
			errs.Add(paths[i], "%q: %v", strings.TrimSpace(h), err)
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
func parseACLs(errs *sdk.ConfigError, v json.RawMessage) []zk.ACL {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(v, &m); err != nil || m == nil {
		errs.Add("set_acls", "must be a table of principal = [permissions], got %s", jsonKind(v))
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
			errs.Add("set_acls", "a principal is empty")
			continue
		}
		var perms []string
		if err := json.Unmarshal(m[principal], &perms); err != nil {
			errs.Add(path, "must be a list of permissions, got %s", jsonKind(m[principal]))
			continue
		}
		if len(perms) == 0 {
			errs.Add(path, "lists no permission (use READ, WRITE, CREATE, DELETE, ADMIN or ALL)")
			continue
		}
		var mask int32
		ok := true
		for _, p := range perms {
			bit, known := permissions[strings.ToUpper(strings.TrimSpace(p))]
			if !known {
				errs.Add(path, "unknown permission %q (use READ, WRITE, CREATE, DELETE, ADMIN or ALL)", p)
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
func parseAuth(errs *sdk.ConfigError, v json.RawMessage) []Credential {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(v, &m); err != nil || m == nil {
		errs.Add("auth_data", "must be a table of scheme = credential, got %s", jsonKind(v))
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
		var secret string
		if err := json.Unmarshal(m[scheme], &secret); err != nil {
			errs.Add(path, "must be a string, got %s", jsonKind(m[scheme]))
			continue
		}
		switch {
		case scheme == "":
			errs.Add("auth_data", "a scheme is empty")
		case strings.EqualFold(scheme, "sasl"):
			errs.Add(path, "SASL (Kerberos/DIGEST-MD5) needs a SASL handshake, which the plugin's client (github.com/go-zookeeper/zk) does not speak; use the digest scheme or TLS client certificates")
		case secret == "":
			errs.Add(path, "the credential is empty")
		default:
			creds = append(creds, Credential{Scheme: scheme, Secret: Secret(secret)})
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
	errs := &sdk.ConfigError{}
	// verify=false is the operator's explicit choice, as in Patroni.
	conf := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: !c.Verify}
	if c.CACert != "" {
		pemBytes, err := os.ReadFile(c.CACert)
		if err != nil {
			errs.Add("cacert", "%v", err)
		} else {
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pemBytes) {
				errs.Add("cacert", "%s holds no PEM certificate", c.CACert)
			}
			conf.RootCAs = pool
		}
	}
	if c.Cert != "" && c.Key != "" {
		cert, err := loadKeyPair(c.Cert, c.Key, string(c.KeyPassword))
		if err != nil {
			var pe *pathError
			if errors.As(err, &pe) {
				errs.Add(pe.key, "%v", pe.err)
			} else {
				errs.Add("cert", "%v", err)
			}
		} else {
			conf.Certificates = []tls.Certificate{cert}
		}
	}
	if err := errs.OrNil(); err != nil {
		return nil, err
	}
	return conf, nil
}

// pathError ties a file problem to the configuration key naming the file.
type pathError struct {
	key string
	err error
}

func (e *pathError) Error() string { return e.key + ": " + e.err.Error() }
func (e *pathError) Unwrap() error { return e.err }

// loadKeyPair reads a PEM certificate chain and its key. A key encrypted
// the legacy OpenSSL way (Proc-Type: 4,ENCRYPTED) is decrypted with the
// password; an encrypted PKCS#8 key is refused with a clear message, the Go
// standard library cannot decrypt it.
func loadKeyPair(certFile, keyFile, password string) (tls.Certificate, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return tls.Certificate{}, &pathError{"cert", err}
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return tls.Certificate{}, &pathError{"key", err}
	}
	block, _ := pem.Decode(keyPEM)
	if block == nil {
		return tls.Certificate{}, &pathError{"key", fmt.Errorf("%s holds no PEM block", keyFile)}
	}
	switch {
	case block.Type == "ENCRYPTED PRIVATE KEY":
		return tls.Certificate{}, &pathError{"key", fmt.Errorf("%s is an encrypted PKCS#8 key, which is not supported: convert it (openssl pkey -in key.pem -aes256 -traditional) or decrypt it", keyFile)}
	// Legacy PEM encryption is deprecated in Go but is what key_password
	// exists for (kazoo passes it to OpenSSL the same way).
	case x509.IsEncryptedPEMBlock(block):
		if password == "" {
			return tls.Certificate{}, &pathError{"key_password", fmt.Errorf("%s is encrypted and no key_password is set", keyFile)}
		}
		der, err := x509.DecryptPEMBlock(block, []byte(password))
		if err != nil {
			return tls.Certificate{}, &pathError{"key_password", fmt.Errorf("decrypting %s: %v", keyFile, err)}
		}
		keyPEM = pem.EncodeToMemory(&pem.Block{Type: block.Type, Bytes: der})
	case password != "":
		return tls.Certificate{}, &pathError{"key_password", fmt.Errorf("%s is not encrypted", keyFile)}
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return tls.Certificate{}, &pathError{"cert", fmt.Errorf("loading %s with key %s: %v", certFile, keyFile, err)}
	}
	return cert, nil
}
