package kube

import (
	"encoding/json"
	"fmt"
	"net"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/custos-ha/custos/plugin/sdk/section"
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

// ParseConfig decodes and checks the JSON of the section without touching
// the network or the file system. Every problem is reported, each with its
// key path, in one *sdk.ConfigError.
func ParseConfig(data []byte) (*Config, error) {
	d, err := section.New(data)
	if err != nil {
		return nil, err
	}
	c := &Config{
		ScopeLabel:              defaultScopeLabel,
		RoleLabel:               defaultRoleLabel,
		LeaderLabelValue:        defaultLeaderValue,
		FollowerLabelValue:      defaultFollowerValue,
		StandbyLeaderLabelValue: defaultStandbyValue,
	}
	d.String("namespace", &c.Namespace)
	c.Labels = decodeLabels(d, "labels")
	d.String("scope_label", &c.ScopeLabel)
	d.String("role_label", &c.RoleLabel)
	d.String("leader_label_value", &c.LeaderLabelValue)
	d.String("follower_label_value", &c.FollowerLabelValue)
	d.String("standby_leader_label_value", &c.StandbyLeaderLabelValue)
	d.String("tmp_role_label", &c.TmpRoleLabel)
	c.BootstrapLabels = decodeLabels(d, "bootstrap_labels")
	d.Bool("use_endpoints", &c.UseEndpoints)
	d.String("pod_ip", &c.PodIP)
	c.Ports = decodePorts(d, "ports")
	d.String("cacert", &c.CACert)
	d.Bool("bypass_api_service", &c.BypassAPIService)
	c.RetriableHTTPCodes = decodeCodes(d, "retriable_http_codes")
	d.String("kubeconfig", &c.Kubeconfig)
	d.String("context", &c.Context)
	d.String("member_store", &c.MemberStore)
	c.check(d)
	if err := d.Err(); err != nil {
		return nil, err
	}
	return c, nil
}

// check validates the decoded values the way the API server would, so that
// a bad label or name is reported with its key instead of failing a write.
func (c *Config) check(d *section.Decoder) {
	if c.Namespace != "" {
		for _, msg := range validation.IsDNS1123Label(c.Namespace) {
			d.Add("namespace", "%q is not a valid namespace: %s", c.Namespace, msg)
		}
	}
	checkQualifiedName := func(key, v string) {
		if !d.Has(key) && v == "" {
			return
		}
		for _, msg := range validation.IsQualifiedName(v) {
			d.Add(key, "%q is not a valid label name: %s", v, msg)
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
			d.Add(key, "must not be empty")
			continue
		}
		for _, msg := range validation.IsValidLabelValue(v) {
			d.Add(key, "%q is not a valid label value: %s", v, msg)
		}
	}
	if _, ok := c.Labels[c.ScopeLabel]; ok {
		d.Add("labels."+c.ScopeLabel, "is the scope_label; its value is always the scope")
	}
	// The role labels are rewritten on every member write; a fixed label or
	// bootstrap label with the same name would flip back and forth.
	reserved := map[string]string{c.ScopeLabel: "scope_label", c.RoleLabel: "role_label"}
	if c.TmpRoleLabel != "" {
		if other, ok := reserved[c.TmpRoleLabel]; ok {
			d.Add("tmp_role_label", "%q is already the %s", c.TmpRoleLabel, other)
		}
		reserved[c.TmpRoleLabel] = "tmp_role_label"
	}
	for k := range c.Labels {
		if other, ok := reserved[k]; ok && k != c.ScopeLabel {
			d.Add("labels."+k, "is already the %s", other)
		}
	}
	for k := range c.BootstrapLabels {
		if other, ok := reserved[k]; ok {
			d.Add("bootstrap_labels."+k, "is already the %s", other)
		} else if _, ok := c.Labels[k]; ok {
			d.Add("bootstrap_labels."+k, "is already one of labels")
		}
	}
	if c.PodIP != "" && net.ParseIP(c.PodIP) == nil {
		d.Add("pod_ip", "%q is not an IP address", c.PodIP)
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
				d.Add(path, "is required when there is more than one port")
			case seen[p.Name]:
				d.Add(path, "%q is used twice", p.Name)
			}
			seen[p.Name] = true
		}
	}
	switch c.MemberStore {
	case "", MemberStorePod, MemberStoreConfigMap:
	default:
		d.Add("member_store", "must be %q or %q, got %q", MemberStorePod, MemberStoreConfigMap, c.MemberStore)
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

// decodeLabels takes a table of label names to values (or, from an
// environment variable, the JSON of one as a string).
func decodeLabels(d *section.Decoder, key string) map[string]string {
	v, ok := d.Value(key)
	if !ok {
		return nil
	}
	path := d.Path(key)
	if s, ok := v.(string); ok {
		parsed, err := section.Parse([]byte(s))
		if err != nil {
			d.Add(path, "must be a table of labels, got %s", section.Describe(v))
			return nil
		}
		v = parsed
	}
	m, ok := v.(map[string]any)
	if !ok {
		d.Add(path, "must be a table of labels, got %s", section.Describe(v))
		return nil
	}
	out := make(map[string]string, len(m))
	for k, item := range m {
		p := path + "." + k
		for _, msg := range validation.IsQualifiedName(k) {
			d.Add(p, "%q is not a valid label name: %s", k, msg)
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
			d.Add(p, "must be a string, got %s", section.Describe(item))
			continue
		}
		for _, msg := range validation.IsValidLabelValue(s) {
			d.Add(p, "%q is not a valid label value: %s", s, msg)
		}
		out[k] = s
	}
	return out
}

// decodePorts takes a list of tables {name, port, protocol}; port defaults
// to 5432 as in Patroni.
func decodePorts(d *section.Decoder, key string) []Port {
	v, ok := d.Value(key)
	if !ok {
		return nil
	}
	path := d.Path(key)
	list, ok := v.([]any)
	if !ok {
		d.Add(path, "must be a list of tables {name, port, protocol}, got %s", section.Describe(v))
		return nil
	}
	out := make([]Port, 0, len(list))
	for i, item := range list {
		t, ok := d.Table(fmt.Sprintf("%s[%d]", path, i), item)
		if !ok {
			continue
		}
		port := Port{Port: defaultPort}
		t.String("name", &port.Name)
		t.Port("port", &port.Port)
		t.String("protocol", &port.Protocol)
		t.Done()
		if port.Name != "" {
			for _, msg := range validation.IsDNS1123Label(port.Name) {
				d.Add(t.Path("name"), "%q is not a valid port name: %s", port.Name, msg)
			}
		}
		switch port.Protocol {
		case "", "TCP", "UDP", "SCTP":
		default:
			d.Add(t.Path("protocol"), "must be TCP, UDP or SCTP, got %q", port.Protocol)
		}
		out = append(out, port)
	}
	return out
}

// decodeCodes takes one code, a list of codes, or a comma-separated string
// of codes, as Patroni does.
func decodeCodes(d *section.Decoder, key string) []int {
	v, ok := d.Value(key)
	if !ok {
		return nil
	}
	path := d.Path(key)
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
			d.Add(p, "must be an HTTP status code, got %s", section.Describe(item))
			continue
		}
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 100 || n > 599 {
			d.Add(p, "must be an HTTP status code (100-599), got %q", s)
			continue
		}
		out = append(out, n)
	}
	return out
}
