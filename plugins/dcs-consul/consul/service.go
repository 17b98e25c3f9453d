package consul

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/hashicorp/consul/api"
)

// Patroni's service registration (register_service): the member becomes a
// Consul service instance so that clients find the primary and replicas by
// DNS (primary.<scope>.service.consul) or the catalog.

// serviceInfo is what the registration needs from the member data; the
// backend reads nothing else from it and decides nothing.
type serviceInfo struct {
	Role    string `json:"role"`
	State   string `json:"state"`
	APIURL  string `json:"api_url"`
	ConnURL string `json:"conn_url"`
}

// serviceState is what was last done with the agent.
type serviceState struct {
	// info is the member data last acted on (registered, deregistered, or
	// skipped as not running); done says whether that went through.
	info serviceInfo
	done bool
	// enabled is register_service when it was last acted on.
	enabled bool
	// registered: a registration may be in place, so turning
	// register_service off must deregister.
	registered bool
}

// registeredRoles are the roles a running member is registered with, after
// '_' became '-' (Patroni 3.x writes master, 4.x primary).
var registeredRoles = []string{"master", "primary", "replica", "standby-leader"}

// ServiceName turns a scope into a name DNS accepts, as Patroni does:
// lower case, '.', ' ' and '_' become '-', any other character outside
// [a-z0-9-] becomes "u" and its code point in four decimal digits, and the
// result is cut at 230 characters (253 less "replica." and
// ".service.consul").
func ServiceName(scope string) string {
	var sb strings.Builder
	for _, r := range strings.ToLower(scope) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-':
			sb.WriteRune(r)
		case r == '.', r == ' ', r == '_':
			sb.WriteByte('-')
		default:
			fmt.Fprintf(&sb, "u%04d", r)
		}
	}
	name := sb.String()
	if len(name) > 230 {
		name = name[:230]
	}
	return name
}

// ServiceID is the member's service instance ID, "<scope>/<member>".
func ServiceID(scope, member string) string { return scope + "/" + member }

func (b *Backend) registered() bool {
	b.serviceMu.Lock()
	defer b.serviceMu.Unlock()
	return b.service.registered
}

// updateService registers, re-registers or deregisters the member's service
// when what it is built from changed, or when the last attempt failed.
// Failures are logged and retried at the next TouchMember; they never fail
// the member write.
func (b *Backend) updateService(ctx context.Context, s state, data []byte) {
	var info serviceInfo
	missing := json.Unmarshal(data, &info) != nil
	var raw map[string]json.RawMessage
	if !missing && json.Unmarshal(data, &raw) == nil {
		for _, k := range []string{"role", "state", "api_url", "conn_url"} {
			if _, ok := raw[k]; !ok {
				missing = true
			}
		}
	}
	b.serviceMu.Lock()
	defer b.serviceMu.Unlock()
	prev := b.service
	if prev.done && prev.info == info && prev.enabled == s.cfg.RegisterService {
		return
	}
	if missing {
		if prev.info != info || prev.done {
			b.logger.Warn("cannot register the service: the member data lacks role, state, api_url or conn_url")
		}
		b.service.info, b.service.done, b.service.enabled = info, false, s.cfg.RegisterService
		return
	}
	id := ServiceID(s.scope, s.member)
	role := strings.ReplaceAll(info.Role, "_", "-")
	var err error
	switch {
	case info.State == "stopped" || !s.cfg.RegisterService:
		b.logger.Info("deregistering service", "service_id", id)
		err = s.client.Agent().ServiceDeregisterOpts(id, s.txn(ctx))
		if err == nil {
			b.service.registered = false
		}
	case !slices.Contains(registeredRoles, role):
		b.logger.Warn("cannot register the service: unknown role", "role", info.Role)
	case info.State != "running":
		// Patroni leaves the registration as it is until the member runs.
	default:
		reg, rerr := registration(s, id, role, info)
		if rerr != nil {
			b.logger.Warn("cannot register the service", "error", rerr)
			break
		}
		b.logger.Info("registering service", "service", reg.Name, "service_id", id, "tags", reg.Tags, "check", reg.Check.HTTP)
		opts := api.ServiceRegisterOpts{ReplaceExistingChecks: true}.WithContext(ctx)
		err = s.client.Agent().ServiceRegisterOpts(reg, opts)
		if err == nil {
			b.service.registered = true
		}
	}
	if err != nil {
		b.logger.Warn("updating service registration failed; retrying at the next member update", "service_id", id, "error", err)
	}
	b.service.info, b.service.done, b.service.enabled = info, err == nil, s.cfg.RegisterService
}

// registration builds Patroni's service definition: the scope's service
// name, ID <scope>/<member>, the configured tags plus the role (and the
// other spelling of the primary role), the address and port of conn_url,
// and an HTTP check on <api_url>/<role> that Consul deregisters after it
// stayed critical for ten session TTLs.
func registration(s state, id, role string, info serviceInfo) (*api.AgentServiceRegistration, error) {
	check, err := url.Parse(info.APIURL)
	if err != nil || check.Host == "" {
		return nil, fmt.Errorf("api_url %q is not a URL", info.APIURL)
	}
	check.Path, check.RawPath = "/"+role, ""
	conn, err := url.Parse(info.ConnURL)
	if err != nil {
		return nil, fmt.Errorf("conn_url %q is not a URL", info.ConnURL)
	}
	port := 0
	if p := conn.Port(); p != "" {
		if port, err = strconv.Atoi(p); err != nil {
			return nil, fmt.Errorf("conn_url %q has a bad port", info.ConnURL)
		}
	}
	tags := slices.Sorted(slices.Values(s.cfg.ServiceTags))
	tags = append(tags, role)
	switch role {
	case "master":
		tags = append(tags, "primary")
	case "primary":
		tags = append(tags, "master")
	}
	reg := &api.AgentServiceRegistration{
		ID:                id,
		Name:              ServiceName(s.scope),
		Tags:              tags,
		Address:           conn.Hostname(),
		Port:              port,
		EnableTagOverride: true,
		Check: &api.AgentServiceCheck{
			HTTP:                           check.String(),
			Interval:                       formatSeconds(s.cfg.ServiceCheckInterval),
			DeregisterCriticalServiceAfter: formatSeconds(10 * SessionTTL(s.ttl)),
		},
	}
	if s.cfg.hasServiceCheckTLSServerName {
		reg.Check.TLSServerName = s.cfg.ServiceCheckTLSServerName
	}
	return reg, nil
}
