package kube

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/util/connrotation"

	"github.com/custos-ha/custos/plugin/sdk/dcs"
)

// Name is the plugin's name: its section is [dcs.kubernetes].
const Name = "kubernetes"

// MaxValueBytes is the largest value the backend promises to store.
// Kubernetes limits all annotations of one object together to 256 KiB
// (names and values); this leaves 16 KiB for the annotations that share
// the object (history next to config, renewTime next to a member's data).
const MaxValueBytes = 240 << 10

// capMaxValueBytes is dcstest.CapMaxValueBytes, spelled out so that the
// plugin binary does not link the testing package.
const capMaxValueBytes = "dcs.max_value_bytes"

// Capabilities are announced in the plugin's identity: readers judge TTLs
// on their own clock, and values are limited by the annotation size.
func Capabilities() map[string]string {
	return map[string]string{
		dcs.CapClientSideTTL: "true",
		capMaxValueBytes:     strconv.Itoa(MaxValueBytes),
	}
}

// Timing and client defaults.
const (
	// clientQPS and clientBurst lift client-go's default limit (5 per
	// second), which an agent's few requests per HA cycle never reach but a
	// burst of retries within retry_timeout could.
	clientQPS   = 50
	clientBurst = 100
	// retryBackoffMin and retryBackoffMax space the retries of a failed
	// request within the retry timeout; Patroni retries with up to 1 s.
	retryBackoffMin = 50 * time.Millisecond
	retryBackoffMax = time.Second
	// defaultRetryTimeout bounds an operation when the host gives none;
	// Patroni's retry_timeout default.
	defaultRetryTimeout = 10 * time.Second
	// dialTimeout and dialKeepAlive for connections to the API server; the
	// keep-alive notices a dead server on an idle watch.
	dialTimeout   = 5 * time.Second
	dialKeepAlive = 10 * time.Second
	// firstListWait is how long Configure waits at least for the watch's
	// first list (longer when the retry timeout is): enough for a loaded
	// API server, short enough not to hold up an agent whose API server is
	// down at start.
	firstListWait = 5 * time.Second
)

// In-cluster files and variables, as every Kubernetes client reads them.
const (
	serviceAccountDir   = "/var/run/secrets/kubernetes.io/serviceaccount"
	serviceAccountToken = serviceAccountDir + "/token"
	serviceAccountCA    = serviceAccountDir + "/ca.crt"
	serviceAccountNS    = serviceAccountDir + "/namespace"
)

// environment is what the backend learns about where it runs.
type environment struct {
	// inPod: the Kubernetes service variables are set and the service
	// account token is mounted.
	inPod bool
	// namespace is the Pod's namespace (from the service account mount).
	namespace string
	// apiHost and apiPort are KUBERNETES_SERVICE_HOST and _PORT.
	apiHost, apiPort string
	// hostname is the Pod's name unless the Pod sets spec.hostname.
	hostname string
}

func detectEnvironment() environment {
	env := environment{apiHost: os.Getenv("KUBERNETES_SERVICE_HOST"), apiPort: os.Getenv("KUBERNETES_SERVICE_PORT")}
	env.hostname, _ = os.Hostname()
	if env.apiHost == "" || env.apiPort == "" {
		return env
	}
	if _, err := os.Stat(serviceAccountToken); err != nil {
		return env
	}
	env.inPod = true
	if ns, err := os.ReadFile(serviceAccountNS); err == nil {
		env.namespace = strings.TrimSpace(string(ns))
	}
	return env
}

// Backend is the Kubernetes implementation of dcs.Backend. Build it with
// New; it is safe for concurrent use.
type Backend struct {
	logger hclog.Logger
	// environment tells where the backend runs; tests replace it.
	environment func() environment

	mu     sync.Mutex
	conn   *connection
	closed bool
}

var _ dcs.Backend = (*Backend)(nil)

// New returns an unconfigured backend.
func New(logger hclog.Logger) *Backend {
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	return &Backend{logger: logger, environment: detectEnvironment}
}

// Validate checks the [dcs.kubernetes] section without connecting anywhere.
func (b *Backend) Validate(_ context.Context, config []byte) error {
	_, err := ParseConfig(config)
	return err
}

// connection is a configured backend: the API clients, the cluster's
// layout and member, and the watch that observes the cluster.
type connection struct {
	logger      hclog.Logger
	cfg         *Config
	namespace   string
	layout      layout
	member      string
	memberStore string
	// labels are every object's labels; selector selects them.
	labels   map[string]string
	selector string
	// kinds are ConfigMaps or Endpoints; members are the Pods or member
	// ConfigMaps (the same API as kinds in ConfigMaps mode).
	kinds    objectAPI
	members  objectAPI
	client   kubernetes.Interface
	retry    time.Duration
	ttl      atomic.Int64 // nanoseconds
	viewer   *viewer
	observer *observer
	// conns tracks every connection to the API server, so that Close ends
	// open watches at once.
	conns *connrotation.ConnectionTracker
	// configService is set once the Endpoints mode's <scope>-config
	// Service is known to exist.
	configService atomic.Bool
}

func (c *connection) ttlNow() time.Duration { return time.Duration(c.ttl.Load()) }

// membersInKinds reports whether member records are ConfigMaps listed with
// the cluster's other ConfigMaps.
func (c *connection) membersInKinds() bool {
	return c.memberStore == MemberStoreConfigMap && !c.layout.endpoints
}

// Configure validates the section, builds the API client, binds the backend
// to the cluster and member and starts observing the cluster's objects.
func (b *Backend) Configure(ctx context.Context, req dcs.ConfigureRequest) error {
	cfg, err := ParseConfig(req.Config)
	if err != nil {
		return err
	}
	if req.TTL <= 0 {
		return fmt.Errorf("configuring kubernetes: ttl %v is not positive", req.TTL)
	}
	env := b.environment()
	l := layout{scope: req.Scope, endpoints: cfg.UseEndpoints}
	namespace, memberStore := placement(cfg, env)
	if err := checkNames(l, req.Member, memberStore); err != nil {
		return fmt.Errorf("configuring kubernetes: %w", err)
	}
	retry := req.RetryTimeout
	if retry <= 0 {
		retry = defaultRetryTimeout
	}
	client, conns, host, err := b.newClient(ctx, cfg, env, retry)
	if err != nil {
		return fmt.Errorf("configuring kubernetes: %w", err)
	}

	labels := cfg.objectLabels(req.Scope)
	c := &connection{
		logger:      b.logger,
		cfg:         cfg,
		namespace:   namespace,
		layout:      l,
		member:      req.Member,
		memberStore: memberStore,
		labels:      labels,
		selector:    selectorOf(labels),
		client:      client,
		retry:       retry,
		viewer:      &viewer{layout: l, obs: newObservations()},
		conns:       conns,
	}
	c.ttl.Store(int64(req.TTL))
	core := client.CoreV1()
	if l.endpoints {
		c.kinds = endpointsAPI(core.Endpoints(namespace))
	} else {
		c.kinds = configMapAPI(core.ConfigMaps(namespace))
	}
	switch {
	case memberStore == MemberStorePod:
		c.members = podAPI(core.Pods(namespace))
	case l.endpoints:
		c.members = configMapAPI(core.ConfigMaps(namespace))
	default:
		c.members = c.kinds
	}
	if memberStore == MemberStorePod && env.hostname != "" && env.hostname != req.Member {
		b.logger.Warn("the member name differs from the host name; member_store = \"pod\" writes to the Pod named after the member",
			"member", req.Member, "hostname", env.hostname)
	}
	c.observer = newObserver(c)
	// Wait for the watch's first list, so that observations (and Watch
	// events) start from here; an API server that does not answer in time
	// shows up in the first operation instead.
	waitCtx, cancel := context.WithTimeout(ctx, max(retry, firstListWait))
	ready := c.observer.waitReady(waitCtx)
	cancel()
	if !ready {
		b.logger.Warn("the API server did not answer the first list in time; carrying on",
			"api_server", host, "waited", max(retry, firstListWait).String())
	}

	b.mu.Lock()
	old := b.conn
	b.conn = c
	b.closed = false
	b.mu.Unlock()
	if old != nil {
		old.close()
	}
	b.logger.Info("configured", "api_server", host, "namespace", namespace,
		"kind", c.kinds.kind(), "member_store", memberStore, "scope", req.Scope, "member", req.Member,
		"selector", c.selector, "ttl", req.TTL.String())
	return nil
}

// newClient builds the API client: found as restConfig says, with every
// connection tracked (so that Close ends watches at once) and, with
// bypass_api_service, dialled to the API servers' own addresses.
func (b *Backend) newClient(ctx context.Context, cfg *Config, env environment, retry time.Duration) (kubernetes.Interface, *connrotation.ConnectionTracker, string, error) {
	restCfg, from, err := restConfig(cfg, env)
	if err != nil {
		return nil, nil, "", err
	}
	b.logger.Debug("API server found", "api_server", restCfg.Host, "from", from)
	dial := (&net.Dialer{Timeout: dialTimeout, KeepAlive: dialKeepAlive}).DialContext
	restCfg.QPS = clientQPS
	restCfg.Burst = clientBurst
	restCfg.UserAgent = "custos-dcs-kubernetes"
	restCfg.WarningHandler = &warningLogger{logger: b.logger}
	build := func(dial dialFunc) (kubernetes.Interface, *connrotation.ConnectionTracker, error) {
		conns := connrotation.NewConnectionTracker()
		restCfg.Dial = connrotation.NewDialerWithTracker(dial, conns).DialContext
		client, err := kubernetes.NewForConfig(restCfg)
		if err != nil {
			return nil, nil, fmt.Errorf("building the client for %s: %w", restCfg.Host, err)
		}
		return client, conns, nil
	}
	client, conns, err := build(dial)
	if err != nil || !cfg.BypassAPIService {
		return client, conns, restCfg.Host, err
	}
	addrs, err := apiServerAddresses(ctx, client, retry)
	conns.CloseAll()
	if err != nil {
		return nil, nil, "", fmt.Errorf("bypass_api_service: %w", err)
	}
	service, err := hostPort(restCfg.Host)
	if err != nil {
		return nil, nil, "", err
	}
	b.logger.Info("bypassing the API service", "service", service, "addresses", addrs)
	client, conns, err = build(bypassDialer(service, addrs, dial))
	return client, conns, restCfg.Host, err
}

// placement returns the namespace of the objects and where member records
// live: as configured, else from where the agent runs. In a Pod, the Pod's
// namespace and its own Pod (Patroni's layout); outside, "default" and
// member ConfigMaps, since there is no Pod to write to.
func placement(cfg *Config, env environment) (namespace, memberStore string) {
	namespace, memberStore = cfg.Namespace, cfg.MemberStore
	if namespace == "" {
		namespace = defaultNamespace
		if env.inPod && env.namespace != "" {
			namespace = env.namespace
		}
	}
	if memberStore == "" {
		memberStore = MemberStoreConfigMap
		if env.inPod {
			memberStore = MemberStorePod
		}
	}
	return namespace, memberStore
}

// checkNames makes sure the scope and member name fit in object names and
// label values, which the API server would otherwise refuse on first write.
func checkNames(l layout, member, store string) error {
	var errs []error
	for _, msg := range validation.IsValidLabelValue(l.scope) {
		errs = append(errs, fmt.Errorf("scope %q is not a valid label value: %s", l.scope, msg))
	}
	names := []string{l.leaderName(), l.configName(), l.failoverName(), l.syncName()}
	if store == MemberStoreConfigMap {
		names = append(names, l.memberObjectName(member))
	} else {
		names = append(names, member)
	}
	for _, n := range names {
		for _, msg := range validation.IsDNS1123Subdomain(n) {
			errs = append(errs, fmt.Errorf("object name %q (from scope %q and member %q) is not valid: %s", n, l.scope, member, msg))
		}
	}
	if l.scope == "" {
		errs = append(errs, errors.New("empty scope"))
	}
	if member == "" {
		errs = append(errs, errors.New("empty member name"))
	}
	return errors.Join(errs...)
}

func selectorOf(labels map[string]string) string {
	keys := make([]string, 0, len(labels))
	for k := range labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + labels[k]
	}
	return strings.Join(parts, ",")
}

// restConfig finds the API server: the kubeconfig key, else the Pod's
// service account (with cacert), else the default kubeconfig (KUBECONFIG or
// ~/.kube/config), as Patroni tries in-cluster first and then kubeconfig.
func restConfig(cfg *Config, env environment) (*rest.Config, string, error) {
	if cfg.Kubeconfig != "" {
		rc, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(
			&clientcmd.ClientConfigLoadingRules{ExplicitPath: cfg.Kubeconfig},
			&clientcmd.ConfigOverrides{CurrentContext: cfg.Context}).ClientConfig()
		if err != nil {
			return nil, "", fmt.Errorf("loading kubeconfig %s: %w", cfg.Kubeconfig, err)
		}
		return rc, "kubeconfig " + cfg.Kubeconfig, nil
	}
	if env.inPod {
		ca := cfg.CACert
		if ca == "" {
			ca = serviceAccountCA
		}
		return &rest.Config{
			Host:            "https://" + net.JoinHostPort(env.apiHost, env.apiPort),
			TLSClientConfig: rest.TLSClientConfig{CAFile: ca},
			BearerTokenFile: serviceAccountToken,
		}, "service account", nil
	}
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rc, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules,
		&clientcmd.ConfigOverrides{CurrentContext: cfg.Context}).ClientConfig()
	if err != nil {
		return nil, "", fmt.Errorf("not running in a Pod, no kubeconfig key, and no usable default kubeconfig (KUBECONFIG or ~/.kube/config): %w", err)
	}
	return rc, "default kubeconfig", nil
}

// SetTTL changes the TTL written into the leader record from the next
// renewal on, and the TTL after which this reader counts an unchanged
// member record as gone.
func (b *Backend) SetTTL(_ context.Context, ttl time.Duration) error {
	if ttl <= 0 {
		return fmt.Errorf("setting ttl: %v is not positive", ttl)
	}
	c, err := b.connection()
	if err != nil {
		return err
	}
	c.ttl.Store(int64(ttl))
	return nil
}

// Close stops the observation of the cluster, which ends open watches, and
// closes the connections to the API server. Like Patroni, it leaves the
// leader record alone: readers see it expire one TTL later unless the agent
// comes back and renews it.
func (b *Backend) Close(_ context.Context) error {
	b.mu.Lock()
	c := b.conn
	b.conn = nil
	b.closed = true
	b.mu.Unlock()
	if c != nil {
		c.close()
	}
	return nil
}

func (c *connection) close() {
	c.observer.stop()
	c.conns.CloseAll()
}

// errNotConfigured and errClosed are returned by operations on a backend
// that has no connection.
var (
	errNotConfigured = fmt.Errorf("kubernetes backend not configured: %w", dcs.ErrUnavailable)
	errClosed        = fmt.Errorf("kubernetes backend closed: %w", dcs.ErrUnavailable)
)

func (b *Backend) connection() (*connection, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.conn == nil {
		if b.closed {
			return nil, errClosed
		}
		return nil, errNotConfigured
	}
	return b.conn, nil
}

// opContext bounds one operation by the retry timeout.
func (c *connection) opContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, c.retry)
}

// call runs one request, retrying it within ctx when it failed in a way
// that may pass (a retriable HTTP status, a server asking to retry, a
// network error). The API errors that carry a meaning (conflict, not
// found, already exists, invalid) come back at once.
func (c *connection) call(ctx context.Context, fn func(ctx context.Context) error) error {
	backoff := retryBackoffMin
	for {
		err := fn(ctx)
		if err == nil || !c.retriable(err) || ctx.Err() != nil {
			return err
		}
		c.logger.Debug("retrying a failed request", "error", err, "backoff", backoff)
		select {
		case <-ctx.Done():
			return err
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, retryBackoffMax)
	}
}

func (c *connection) retriable(err error) bool {
	var status apierrors.APIStatus
	if errors.As(err, &status) {
		code := int(status.Status().Code)
		if c.cfg.retriable(code) {
			return true
		}
		return apierrors.IsTooManyRequests(err) || apierrors.IsServerTimeout(err) || apierrors.IsTimeout(err)
	}
	var netErr net.Error
	if errors.As(err, &netErr) {
		return true
	}
	return isConnectionError(err)
}

// isConnectionError recognises transport failures client-go reports without
// a net.Error in the chain.
func isConnectionError(err error) bool {
	msg := err.Error()
	for _, s := range []string{"connection refused", "connection reset", "broken pipe", "EOF", "no route to host", "http2: "} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

// storeErr turns an error from the API server into the contract's: the
// caller's own cancellation stays a context error; a refused write (invalid
// object, too large) stays a plain error; everything else means the store
// is in trouble. The API error is kept in the message but not in the
// chain, so that its status does not travel to the host as a contract code.
func storeErr(ctx context.Context, op string, err error) error {
	if errors.Is(ctx.Err(), context.Canceled) {
		return fmt.Errorf("%s: %w", op, ctx.Err())
	}
	if apierrors.IsInvalid(err) || apierrors.IsBadRequest(err) || apierrors.IsRequestEntityTooLargeError(err) {
		return fmt.Errorf("%s: refused by the API server: %v", op, err)
	}
	return fmt.Errorf("%s: %w: %v", op, dcs.ErrUnavailable, err)
}

// warningLogger logs each distinct API server warning once (Endpoints are
// deprecated in favour of EndpointSlices since Kubernetes 1.33; Patroni's
// use_endpoints mode still uses them).
type warningLogger struct {
	logger hclog.Logger
	seen   sync.Map
}

func (w *warningLogger) HandleWarningHeader(code int, agent, text string) {
	if code != 299 || text == "" {
		return
	}
	if _, dup := w.seen.LoadOrStore(text, true); !dup {
		w.logger.Warn("API server warning", "warning", text)
	}
}
