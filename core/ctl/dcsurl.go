package ctl

import (
	"encoding/json"
	"fmt"
	"net"
	"strconv"
	"strings"
)

// DCS schemes custosctl accepts in a DCS URL, with the DCS plugin each one
// names and the port of a host given without one.
var dcsSchemes = map[string]struct {
	plugin string
	port   int
}{
	"etcd3":     {plugin: "etcd3", port: 2379},
	"etcd":      {plugin: "etcd3", port: 2379}, // patronictl's etcd:// (v2); custos speaks v3 only
	"zookeeper": {plugin: "zookeeper", port: 2181},
	"consul":    {plugin: "consul", port: 8500},
}

// zookeeperPort is ZooKeeper's client port: a scheme-less URL on it means
// ZooKeeper, anything else etcd (patronictl's rule).
const zookeeperPort = 2181

// DCSURL is a parsed -d/--dcs-url: scheme://host[:port][,host[:port]...][/namespace].
type DCSURL struct {
	// Plugin is the DCS plugin name ("etcd3", "zookeeper").
	Plugin string
	// Hosts are "host:port" entries, the default port filled in.
	Hosts []string
	// Namespace is the URL's path ("/service"), "" when it has none.
	Namespace string
	// Username and Password come from user info (etcd3 only).
	Username, Password string
}

// ParseDCSURL parses a DCS URL. Without a scheme the port decides, as in
// patronictl: 2181 is ZooKeeper, anything else etcd3.
func ParseDCSURL(s string) (DCSURL, error) {
	rest := strings.TrimSpace(s)
	if rest == "" {
		return DCSURL{}, fmt.Errorf("empty DCS URL")
	}
	scheme, after, hasScheme := strings.Cut(rest, "://")
	if hasScheme {
		rest = after
	} else {
		scheme = ""
	}
	scheme = strings.ToLower(scheme)
	if strings.ContainsAny(rest, "?#") {
		return DCSURL{}, fmt.Errorf("DCS URL %q: query strings and fragments are not supported", s)
	}
	authority, path, _ := strings.Cut(rest, "/")
	u := DCSURL{}
	if userinfo, hosts, ok := strings.Cut(authority, "@"); ok {
		authority = hosts
		u.Username, u.Password, _ = strings.Cut(userinfo, ":")
	}
	if path = strings.Trim(path, "/"); path != "" {
		u.Namespace = "/" + path
	}

	var hosts []hostPort
	for _, h := range strings.Split(authority, ",") {
		if h = strings.TrimSpace(h); h == "" {
			continue
		}
		hp, err := parseHostPort(h)
		if err != nil {
			return DCSURL{}, fmt.Errorf("DCS URL %q: %w", s, err)
		}
		hosts = append(hosts, hp)
	}
	if len(hosts) == 0 {
		return DCSURL{}, fmt.Errorf("DCS URL %q names no host", s)
	}
	if scheme == "" {
		scheme = "etcd3"
		if hosts[0].port == zookeeperPort {
			scheme = "zookeeper"
		}
	}
	def, ok := dcsSchemes[scheme]
	if !ok {
		return DCSURL{}, fmt.Errorf("DCS URL %q: unknown scheme %q (known: etcd3, etcd, zookeeper, consul; for another DCS use -c with its [dcs.<name>] section)", s, scheme)
	}
	u.Plugin = def.plugin
	if u.Username != "" && u.Plugin != "etcd3" {
		return DCSURL{}, fmt.Errorf("DCS URL %q: credentials in the URL are only supported for etcd3", s)
	}
	for _, hp := range hosts {
		port := hp.port
		if port == 0 {
			port = def.port
		}
		u.Hosts = append(u.Hosts, net.JoinHostPort(hp.host, strconv.Itoa(port)))
	}
	return u, nil
}

type hostPort struct {
	host string
	port int // 0: none given
}

func parseHostPort(s string) (hostPort, error) {
	host, portStr, err := net.SplitHostPort(s)
	if err != nil {
		// No port: a bare host, or a bracketed IPv6 address.
		if strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]") {
			return hostPort{host: s[1 : len(s)-1]}, nil
		}
		if strings.Contains(s, ":") {
			return hostPort{}, fmt.Errorf("host %q: %w", s, err)
		}
		return hostPort{host: s}, nil
	}
	if host == "" {
		return hostPort{}, fmt.Errorf("host %q: empty host name", s)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port <= 0 || port > 65535 {
		return hostPort{}, fmt.Errorf("host %q: invalid port %q", s, portStr)
	}
	return hostPort{host: host, port: port}, nil
}

// SectionJSON is the [dcs.<plugin>] section the URL stands for, as the
// plugin receives it.
func (u DCSURL) SectionJSON() []byte {
	section := map[string]any{"hosts": u.Hosts}
	if u.Plugin == "consul" {
		// Consul's section names one agent (Patroni's consul.host).
		section = map[string]any{"host": u.Hosts[0]}
	}
	if u.Username != "" {
		section["username"] = u.Username
		section["password"] = u.Password
	}
	b, err := json.Marshal(section)
	if err != nil {
		// Strings and a list of strings always encode.
		panic(fmt.Sprintf("encoding a DCS section: %v", err))
	}
	return b
}
