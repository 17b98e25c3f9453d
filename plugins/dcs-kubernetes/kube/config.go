package kube

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/custos-ha/custos/plugin/sdk"
)

// Defaults of the section, as in Patroni 4.x.
const (
	defaultNamespace     = "default"
	defaultScopeLabel    = "cluster-name"
	defaultRoleLabel     = "role"
	defaultLeaderValue   = "primary"
	defaultFollowerValue = "replica"
	defaultStandbyValue  = "primary"
	defaultPort          = 5432
)

// Where member records live.
const (
	// MemberStorePod keeps a member's record in the status annotation of the
	// Pod named after the member, as Patroni does.
	MemberStorePod = "pod"
	// MemberStoreConfigMap keeps it in a ConfigMap <scope>-member-<name>, for
	// agents that do not run in a Pod of their own.
	MemberStoreConfigMap = "configmap"
)

// defaultRetriableHTTPCodes are retried within the retry timeout, as in
// Patroni; retriable_http_codes adds to them.
var defaultRetriableHTTPCodes = []int{500, 503, 504}

// Port is one entry of ports: the leader Endpoints' port in use_endpoints
// mode.
type Port struct {
	Name     string
	Port     int
	Protocol string
}

// Config is the [dcs.kubernetes] section, with Patroni's kubernetes key
// names plus kubeconfig, context and member_store. Build it with
// ParseConfig.
type Config struct {
	// Namespace is the Kubernetes namespace of every object; empty means the
	// Pod's own namespace when running in one, else "default".
	Namespace string
	// Labels are put on every object, together with ScopeLabel=<scope>; they
	// also select the objects and the member Pods.
	Labels     map[string]string
	ScopeLabel string
	// RoleLabel and its values are set on each member's Pod (or member
	// ConfigMap) from the role in its member data.
	RoleLabel               string
	LeaderLabelValue        string
	FollowerLabelValue      string
	StandbyLeaderLabelValue string
	// TmpRoleLabel, when set, also carries the role with Patroni 3.x values
	// (master/replica), for upgrades.
	TmpRoleLabel string
	// BootstrapLabels are set while the member bootstraps or creates a
	// replica, and removed afterwards.
	BootstrapLabels map[string]string
	// UseEndpoints stores the keys in Endpoints instead of ConfigMaps.
	UseEndpoints bool
	// PodIP is the address put in the leader Endpoints' subsets.
	PodIP string
	// Ports are the leader Endpoints' ports.
	Ports []Port
	// CACert verifies the API server in a Pod (the service account's CA by
	// default).
	CACert string
	// BypassAPIService talks to the API server addresses listed in the
	// default/kubernetes Endpoints instead of going through the service IP.
	BypassAPIService bool
	// RetriableHTTPCodes are the HTTP status codes retried within the retry
	// timeout, besides 500, 503 and 504.
	RetriableHTTPCodes []int
	// Kubeconfig is a kubeconfig file to reach the API server with (outside
	// a Pod); Context picks one of its contexts.
	Kubeconfig string
	Context    string
	// MemberStore is MemberStorePod or MemberStoreConfigMap; empty means
	// MemberStorePod when running in a Pod and MemberStoreConfigMap otherwise.
	MemberStore string
}

// configKeys are the keys of the section and how each is decoded.
var configKeys = map[string]func(c *Config, path string, v any, errs *sdk.ConfigError){
	"namespace":            func(c *Config, p string, v any, e *sdk.ConfigError) { c.Namespace = decodeString(p, v, e) },
	"labels":               func(c *Config, p string, v any, e *sdk.ConfigError) { c.Labels = decodeLabels(p, v, e) },
	"scope_label":          func(c *Config, p string, v any, e *sdk.ConfigError) { c.ScopeLabel = decodeString(p, v, e) },
	"role_label":           func(c *Config, p string, v any, e *sdk.ConfigError) { c.RoleLabel = decodeString(p, v, e) },
	"leader_label_value":   func(c *Config, p string, v any, e *sdk.ConfigError) { c.LeaderLabelValue = decodeString(p, v, e) },
	"follower_label_value": func(c *Config, p string, v any, e *sdk.ConfigError) { c.FollowerLabelValue = decodeString(p, v, e) },
	"standby_leader_label_value": func(c *Config, p string, v any, e *sdk.ConfigError) {
		c.StandbyLeaderLabelValue = decodeString(p, v, e)
	},
	"tmp_role_label":       func(c *Config, p string, v any, e *sdk.ConfigError) { c.TmpRoleLabel = decodeString(p, v, e) },
	"bootstrap_labels":     func(c *Config, p string, v any, e *sdk.ConfigError) { c.BootstrapLabels = decodeLabels(p, v, e) },
	"use_endpoints":        func(c *Config, p string, v any, e *sdk.ConfigError) { c.UseEndpoints = decodeBool(p, v, e) },
	"pod_ip":               func(c *Config, p string, v any, e *sdk.ConfigError) { c.PodIP = decodeString(p, v, e) },
	"ports":                func(c *Config, p string, v any, e *sdk.ConfigError) { c.Ports = decodePorts(p, v, e) },
	"cacert":               func(c *Config, p string, v any, e *sdk.ConfigError) { c.CACert = decodeString(p, v, e) },
	"bypass_api_service":   func(c *Config, p string, v any, e *sdk.ConfigError) { c.BypassAPIService = decodeBool(p, v, e) },
	"retriable_http_codes": func(c *Config, p string, v any, e *sdk.ConfigError) { c.RetriableHTTPCodes = decodeCodes(p, v, e) },
	"kubeconfig":           func(c *Config, p string, v any, e *sdk.ConfigError) { c.Kubeconfig = decodeString(p, v, e) },
	"context":              func(c *Config, p string, v any, e *sdk.ConfigError) { c.Context = decodeString(p, v, e) },
	"member_store":         func(c *Config, p string, v any, e *sdk.ConfigError) { c.MemberStore = decodeString(p, v, e) },
}

// ParseConfig decodes and checks the JSON of the section without touching
// the network or the file system. Every problem is reported, each with its
// key path, in one *sdk.ConfigError.
func ParseConfig(data []byte) (*Config, error) {
	errs := &sdk.ConfigError{}
	c := &Config{
		ScopeLabel:              defaultScopeLabel,
		RoleLabel:               defaultRoleLabel,
		LeaderLabelValue:        defaultLeaderValue,
		FollowerLabelValue:      defaultFollowerValue,
		StandbyLeaderLabelValue: defaultStandbyValue,
	}
	raw := map[string]any{}
	if trimmed := bytes.TrimSpace(data); len(trimmed) > 0 && string(trimmed) != "null" {
		dec := json.NewDecoder(bytes.NewReader(trimmed))
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

// check validates the decoded values the way the API server would, so that
// a bad label or name is reported with its key instead of failing a write.
func (c *Config) check(raw map[string]any, errs *sdk.ConfigError) {
	if c.Namespace != "" {
		for _, msg := range validation.IsDNS1123Label(c.Namespace) {
			errs.Add("namespace", "%q is not a valid namespace: %s", c.Namespace, msg)
		}
	}
	checkQualifiedName := func(key, v string) {
		if _, set := raw[key]; !set && v == "" {
			return
		}
		for _, msg := range validation.IsQualifiedName(v) {
			errs.Add(key, "%q is not a valid label name: %s", v, msg)
		}
	}
	checkQualifiedName("scope_label", c.ScopeLabel)
	checkQualifiedName("role_label", c.RoleLabel)
	if c.TmpRoleLabel != "" {
		checkQualifiedName("tmp_role_label", c.TmpRoleLabel)
	}
	for key, v := range map[string]string{
		"leader_label_value":         c.LeaderLabelValue,
		"follower_label_value":       c.FollowerLabelValue,
		"standby_leader_label_value": c.StandbyLeaderLabelValue,
	} {
		if v == "" {
			errs.Add(key, "must not be empty")
			continue
		}
		for _, msg := range validation.IsValidLabelValue(v) {
			errs.Add(key, "%q is not a valid label value: %s", v, msg)
		}
	}
	if _, ok := c.Labels[c.ScopeLabel]; ok {
		errs.Add("labels."+c.ScopeLabel, "is the scope_label; its value is always the scope")
	}
	// The role labels are rewritten on every member write; a fixed label or
	// bootstrap label with the same name would flip back and forth.
	reserved := map[string]string{c.ScopeLabel: "scope_label", c.RoleLabel: "role_label"}
	if c.TmpRoleLabel != "" {
		if other, ok := reserved[c.TmpRoleLabel]; ok {
			errs.Add("tmp_role_label", "%q is already the %s", c.TmpRoleLabel, other)
		}
		reserved[c.TmpRoleLabel] = "tmp_role_label"
	}
	for k := range c.Labels {
		if other, ok := reserved[k]; ok && k != c.ScopeLabel {
			errs.Add("labels."+k, "is already the %s", other)
		}
	}
	for k := range c.BootstrapLabels {
		if other, ok := reserved[k]; ok {
			errs.Add("bootstrap_labels."+k, "is already the %s", other)
		} else if _, ok := c.Labels[k]; ok {
			errs.Add("bootstrap_labels."+k, "is already one of labels")
		}
	}
	if c.PodIP != "" && net.ParseIP(c.PodIP) == nil {
		errs.Add("pod_ip", "%q is not an IP address", c.PodIP)
	}
	if len(c.Ports) == 0 {
		c.Ports = []Port{{Port: defaultPort}}
	}
	if len(c.Ports) > 1 {
		seen := map[string]bool{}
		for i, p := range c.Ports {
			path := fmt.Sprintf("ports[%d].name", i)
			switch {
			case p.Name == "":
				errs.Add(path, "is required when there is more than one port")
			case seen[p.Name]:
				errs.Add(path, "%q is used twice", p.Name)
			}
			seen[p.Name] = true
		}
	}
	switch c.MemberStore {
	case "", MemberStorePod, MemberStoreConfigMap:
	default:
		errs.Add("member_store", "must be %q or %q, got %q", MemberStorePod, MemberStoreConfigMap, c.MemberStore)
	}
}

// retriable reports whether an HTTP status code is retried.
func (c *Config) retriable(code int) bool {
	for _, r := range defaultRetriableHTTPCodes {
		if r == code {
			return true
		}
	}
	for _, r := range c.RetriableHTTPCodes {
		if r == code {
			return true
		}
	}
	return false
}

// objectLabels are the labels of the cluster's objects, and the selector of
// its objects and Pods: the labels plus <scope_label>=<scope>, as in Patroni.
func (c *Config) objectLabels(scope string) map[string]string {
	out := make(map[string]string, len(c.Labels)+1)
	for k, v := range c.Labels {
		out[k] = v
	}
	out[c.ScopeLabel] = scope
	return out
}

func decodeString(path string, v any, errs *sdk.ConfigError) string {
	s, ok := v.(string)
	if !ok {
		errs.Add(path, "must be a string, got %s", jsonType(v))
	}
	return s
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

// decodeLabels takes a table of label names to values (or, from an
// environment variable, the JSON of one as a string).
func decodeLabels(path string, v any, errs *sdk.ConfigError) map[string]string {
	if s, ok := v.(string); ok {
		dec := json.NewDecoder(strings.NewReader(s))
		dec.UseNumber()
		var parsed any
		if err := dec.Decode(&parsed); err != nil {
			errs.Add(path, "must be a table of labels, got %s", jsonType(v))
			return nil
		}
		v = parsed
	}
	m, ok := v.(map[string]any)
	if !ok {
		errs.Add(path, "must be a table of labels, got %s", jsonType(v))
		return nil
	}
	out := make(map[string]string, len(m))
	for k, item := range m {
		p := path + "." + k
		for _, msg := range validation.IsQualifiedName(k) {
			errs.Add(p, "%q is not a valid label name: %s", k, msg)
		}
		var s string
		switch item := item.(type) {
		case string:
			s = item
		case json.Number:
			s = item.String()
		case bool:
			s = strconv.FormatBool(item)
		default:
			errs.Add(p, "must be a string, got %s", jsonType(item))
			continue
		}
		for _, msg := range validation.IsValidLabelValue(s) {
			errs.Add(p, "%q is not a valid label value: %s", s, msg)
		}
		out[k] = s
	}
	return out
}

// decodePorts takes a list of tables {name, port, protocol}; port defaults
// to 5432 as in Patroni.
func decodePorts(path string, v any, errs *sdk.ConfigError) []Port {
	list, ok := v.([]any)
	if !ok {
		errs.Add(path, "must be a list of tables {name, port, protocol}, got %s", jsonType(v))
		return nil
	}
	out := make([]Port, 0, len(list))
	for i, item := range list {
		p := fmt.Sprintf("%s[%d]", path, i)
		m, ok := item.(map[string]any)
		if !ok {
			errs.Add(p, "must be a table {name, port, protocol}, got %s", jsonType(item))
			continue
		}
		port := Port{Port: defaultPort}
		for k, val := range m {
			switch k {
			case "name":
				port.Name = decodeString(p+".name", val, errs)
				if port.Name != "" {
					for _, msg := range validation.IsDNS1123Label(port.Name) {
						errs.Add(p+".name", "%q is not a valid port name: %s", port.Name, msg)
					}
				}
			case "port":
				port.Port = decodePortNumber(p+".port", val, errs)
			case "protocol":
				port.Protocol = decodeString(p+".protocol", val, errs)
				switch port.Protocol {
				case "", "TCP", "UDP", "SCTP":
				default:
					errs.Add(p+".protocol", "must be TCP, UDP or SCTP, got %q", port.Protocol)
				}
			default:
				errs.Add(p+"."+k, "unknown key (known: name, port, protocol)")
			}
		}
		out = append(out, port)
	}
	return out
}

func decodePortNumber(path string, v any, errs *sdk.ConfigError) int {
	var s string
	switch v := v.(type) {
	case json.Number:
		s = v.String()
	case string:
		s = v
	default:
		errs.Add(path, "must be a port number, got %s", jsonType(v))
		return defaultPort
	}
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil || n < 1 || n > 65535 {
		errs.Add(path, "must be a port number between 1 and 65535, got %q", s)
		return defaultPort
	}
	return n
}

// decodeCodes takes one code, a list of codes, or a comma-separated string
// of codes, as Patroni does.
func decodeCodes(path string, v any, errs *sdk.ConfigError) []int {
	var items []any
	switch v := v.(type) {
	case []any:
		items = v
	case string:
		for _, s := range strings.Split(v, ",") {
			if s = strings.TrimSpace(s); s != "" {
				items = append(items, s)
			}
		}
	default:
		items = []any{v}
	}
	out := make([]int, 0, len(items))
	for i, item := range items {
		p := path
		if _, isList := v.([]any); isList {
			p = fmt.Sprintf("%s[%d]", path, i)
		}
		var s string
		switch item := item.(type) {
		case json.Number:
			s = item.String()
		case string:
			s = item
		default:
			errs.Add(p, "must be an HTTP status code, got %s", jsonType(item))
			continue
		}
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 100 || n > 599 {
			errs.Add(p, "must be an HTTP status code (100-599), got %q", s)
			continue
		}
		out = append(out, n)
	}
	return out
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
