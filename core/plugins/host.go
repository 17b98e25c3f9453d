package plugins

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"

	"github.com/custos-ha/custos/plugin/sdk"
	"github.com/custos-ha/custos/plugin/sdk/bootstrap"
	"github.com/custos-ha/custos/plugin/sdk/callback"
	"github.com/custos-ha/custos/plugin/sdk/dcs"
	"github.com/custos-ha/custos/plugin/sdk/replica"
)

const (
	// startTimeout bounds go-plugin's handshake. A plugin only has to open
	// a listener and print one line on stdout before it serves, so one that
	// takes longer is stuck, not slow.
	startTimeout = 10 * time.Second
	// identityTimeout bounds the identity call, which a plugin answers from
	// memory.
	identityTimeout = 5 * time.Second
	// pluginCloseTimeout bounds a plugin's own Close at shutdown (releasing
	// its DCS connections) before its process is ended anyway.
	pluginCloseTimeout = 2 * time.Second
)

// pluginLogLevelEnv is read by sdk.NewLogger inside the plugin: the host
// passes its own level so a plugin does not format lines that the host
// would drop. A value in the agent's environment wins.
const pluginLogLevelEnv = "CUSTOS_PLUGIN_LOG_LEVEL"

// pluginSets returns, for every plugin protocol major this host serves, the
// plugins it can dispense under that major. go-plugin tells the plugin the
// list and the plugin picks the highest one it also serves. Serving N and
// N-1 means adding the N-1 entry here.
func pluginSets() map[int]plugin.PluginSet {
	return map[int]plugin.PluginSet{
		sdk.ProtocolVersion: {
			sdk.IdentityPluginName: &sdk.IdentityPlugin{},
			dcs.PluginName:         &dcs.Plugin{},
			replica.PluginName:     &replica.Plugin{},
			bootstrap.PluginName:   &bootstrap.Plugin{},
			callback.PluginName:    &callback.Plugin{},
		},
	}
}

// ProtocolVersions lists the plugin protocol majors this host serves, in
// ascending order.
func ProtocolVersions() []int {
	var vs []int
	for v := range pluginSets() {
		vs = append(vs, v)
	}
	slices.Sort(vs)
	return vs
}

// ProtocolError reports a plugin that speaks none of the protocol versions
// the host serves.
type ProtocolError struct {
	Plugin string
	Path   string
	// PluginVersion is the version the plugin announced (its oldest when it
	// serves several and none matched), 0 when unknown.
	PluginVersion int
	HostVersions  []int
	// Err is go-plugin's error.
	Err error
}

func (e *ProtocolError) Error() string {
	host := make([]string, len(e.HostVersions))
	for i, v := range e.HostVersions {
		host[i] = strconv.Itoa(v)
	}
	if e.PluginVersion == 0 {
		return fmt.Sprintf("plugin %s (%s) speaks none of the plugin protocol versions this custos serves (%s): %v",
			e.Plugin, e.Path, strings.Join(host, ", "), e.Err)
	}
	return fmt.Sprintf("plugin %s (%s) speaks plugin protocol version %d, but this custos serves version %s: install the plugin release built for this custos release",
		e.Plugin, e.Path, e.PluginVersion, strings.Join(host, ", "))
}

func (e *ProtocolError) Unwrap() error { return e.Err }

// goPluginVersionMismatch matches go-plugin's error for a plugin that
// announced a protocol version the host does not offer (v1.7.0, client.go
// checkProtoVersion). go-plugin exports no error value for it, so this
// pattern is the only way to tell it apart; TestProtocolMismatch fails if
// an upgrade changes the wording.
var goPluginVersionMismatch = regexp.MustCompile(`incompatible API version with plugin\. Plugin version: (\d+)`)

// Options configure a Host.
type Options struct {
	// Logger is the agent's logger. Each plugin logs through
	// Logger.Named("plugin").With("plugin", <binary name>), its own
	// stderr lines included. Nil discards.
	Logger hclog.Logger
	// Dir is the plugin directory (plugin_dir).
	Dir string
	// Checksums maps a binary name ("dcs-etcd3") to the sha256 its file must
	// have ([plugins.<name>] sha256), in hex. A binary without an entry is
	// not checked.
	Checksums map[string]string
}

// Host finds, starts and owns plugin processes.
type Host struct {
	logger    hclog.Logger
	dir       string
	checksums map[string][]byte

	// restartMin, restartMax and restartStable are the restart policy of
	// supervised plugins (restartBackoffMin, restartBackoffMax,
	// restartStableUptime); tests change them.
	restartMin, restartMax, restartStable time.Duration

	mu          sync.Mutex
	shutdown    bool
	plugins     map[*Plugin]struct{}
	supervisors map[closer]struct{}
}

// NewHost returns a host for the plugin directory. It fails on a malformed
// checksum.
func NewHost(opts Options) (*Host, error) {
	sums, err := parseChecksums(opts.Checksums)
	if err != nil {
		return nil, err
	}
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, fmt.Errorf("resolving plugin directory %s: %w", opts.Dir, err)
	}
	logger := opts.Logger
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	return &Host{
		logger:        logger,
		dir:           dir,
		checksums:     sums,
		restartMin:    restartBackoffMin,
		restartMax:    restartBackoffMax,
		restartStable: restartStableUptime,
		plugins:       map[*Plugin]struct{}{},
		supervisors:   map[closer]struct{}{},
	}, nil
}

// Dir returns the absolute plugin directory.
func (h *Host) Dir() string { return h.dir }

// Discover lists the plugin binaries of the host's directory (see the
// package-level Discover).
func (h *Host) Discover() ([]Binary, error) { return Discover(h.dir) }

// Plugin is a running plugin process that answered its identity call.
type Plugin struct {
	Binary Binary
	// Identity is what the plugin said about itself; its kind and name
	// count, not the file name.
	Identity sdk.Identity
	// ProtocolVersion is the protocol major negotiated with the plugin.
	ProtocolVersion int

	host    *Host
	logger  hclog.Logger
	stderr  *stderrLimiter
	client  *plugin.Client
	rpc     plugin.ClientProtocol
	cancel  context.CancelFunc // kills the process outright
	started time.Time
	ready   bool // the handshake and identity call succeeded; guarded by host.mu

	killOnce sync.Once
}

// Launch starts a plugin binary and asks its identity. It refuses a binary
// that others may write or whose sha256 differs from the configured one,
// and reports a plugin that speaks none of the host's protocol versions
// with a *ProtocolError. ctx bounds the start only; the process lives until
// Kill or Shutdown.
func (h *Host) Launch(ctx context.Context, bin Binary) (*Plugin, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("starting plugin %s: %w", bin.Name, err)
	}
	if err := checkDir(filepath.Dir(bin.Path)); err != nil {
		return nil, err
	}
	if err := checkBinary(bin.Path); err != nil {
		return nil, err
	}
	var secure *plugin.SecureConfig
	if want, ok := h.checksums[bin.Name]; ok {
		got, err := fileSHA256(bin.Path)
		if err != nil {
			return nil, fmt.Errorf("plugin %s: %w", bin.Name, err)
		}
		if !bytes.Equal(got, want) {
			return nil, &ChecksumError{Plugin: bin.Name, Path: bin.Path, Expected: fmt.Sprintf("%x", want), Actual: fmt.Sprintf("%x", got)}
		}
		// go-plugin hashes the file once more right before exec.
		secure = &plugin.SecureConfig{Checksum: want, Hash: sha256.New()}
	}

	logger := h.logger.Named("plugin").With("plugin", bin.Name)
	stderr := newStderrLimiter(logger)
	// The process lives within procCtx: cancelling it kills the process even
	// while go-plugin is still waiting for the handshake.
	procCtx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(procCtx, bin.Path)
	cmd.Env = pluginEnv(h.logger.GetLevel())
	p := &Plugin{
		Binary: bin,
		host:   h,
		logger: logger,
		stderr: stderr,
		cancel: cancel,
		client: plugin.NewClient(&plugin.ClientConfig{
			HandshakeConfig:  sdk.Handshake,
			VersionedPlugins: pluginSets(),
			Cmd:              cmd,
			SecureConfig:     secure,
			AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
			GRPCDialOptions:  sdk.GRPCDialOptions(),
			AutoMTLS:         true,
			StartTimeout:     startTimeout,
			Logger:           stderr.logger(),
		}),
	}
	if !h.track(p) {
		cancel()
		return nil, fmt.Errorf("starting plugin %s: the plugin host is shut down", bin.Name)
	}
	stopKillOnCancel := context.AfterFunc(ctx, cancel)
	err := p.start(ctx)
	if !stopKillOnCancel() && err == nil {
		err = fmt.Errorf("starting plugin %s: %w", bin.Name, ctx.Err())
	}
	if err != nil {
		p.Kill()
		if ctx.Err() != nil {
			return nil, fmt.Errorf("starting plugin %s: %w", bin.Name, ctx.Err())
		}
		return nil, err
	}
	h.mu.Lock()
	down := h.shutdown
	p.ready = !down
	h.mu.Unlock()
	if down {
		p.Kill()
		return nil, fmt.Errorf("starting plugin %s: the plugin host is shut down", bin.Name)
	}
	logger.Info("plugin started", "identity", p.Identity.String(), "protocol", p.ProtocolVersion, "pid", p.Pid())
	return p, nil
}

// start runs the handshake and the identity call.
func (p *Plugin) start(ctx context.Context) error {
	p.started = time.Now()
	rpc, err := p.client.Client()
	if err != nil {
		return startError(p.Binary, err)
	}
	p.rpc = rpc
	p.ProtocolVersion = p.client.NegotiatedVersion()
	raw, err := rpc.Dispense(sdk.IdentityPluginName)
	if err != nil {
		return fmt.Errorf("plugin %s: dispensing the identity service: %w", p.Binary.Name, err)
	}
	idc, ok := raw.(*sdk.IdentityClient)
	if !ok {
		return fmt.Errorf("plugin %s: identity service has unexpected type %T", p.Binary.Name, raw)
	}
	ictx, cancel := context.WithTimeout(ctx, identityTimeout)
	defer cancel()
	id, err := idc.Identity(ictx)
	if err != nil {
		return fmt.Errorf("plugin %s: asking its identity: %w", p.Binary.Name, err)
	}
	if id.Name == "" || len(id.Kinds) == 0 {
		return fmt.Errorf("plugin %s: its identity names no name or no kind (%s)", p.Binary.Name, id)
	}
	p.Identity = id
	return nil
}

// startError explains why go-plugin could not start a plugin.
func startError(bin Binary, err error) error {
	if m := goPluginVersionMismatch.FindStringSubmatch(err.Error()); m != nil {
		v, _ := strconv.Atoi(m[1])
		return &ProtocolError{Plugin: bin.Name, Path: bin.Path, PluginVersion: v, HostVersions: ProtocolVersions(), Err: err}
	}
	if errors.Is(err, plugin.ErrChecksumsDoNotMatch) {
		return fmt.Errorf("plugin %s: %s changed between its sha256 check and its start: %w", bin.Name, bin.Path, err)
	}
	return fmt.Errorf("starting plugin %s (%s): %w", bin.Name, bin.Path, err)
}

// Pid returns the plugin's process id, 0 when it has none.
func (p *Plugin) Pid() int {
	rc := p.client.ReattachConfig()
	if rc == nil {
		return 0
	}
	return rc.Pid
}

// Exited reports whether the plugin process has ended.
func (p *Plugin) Exited() bool { return p.client.Exited() }

// DCS returns the plugin's DCS backend, talking to this process.
func (p *Plugin) DCS() (dcs.Backend, error) {
	if !p.Identity.Serves(sdk.KindDCS) {
		return nil, fmt.Errorf("plugin %s (%s) does not serve kind %s", p.Binary.Name, p.Identity, sdk.KindDCS)
	}
	raw, err := p.rpc.Dispense(dcs.PluginName)
	if err != nil {
		return nil, fmt.Errorf("plugin %s: dispensing the dcs service: %w", p.Binary.Name, err)
	}
	b, ok := raw.(dcs.Backend)
	if !ok {
		return nil, fmt.Errorf("plugin %s: dcs service has unexpected type %T", p.Binary.Name, raw)
	}
	return b, nil
}

// Replica returns the plugin's replica creator, talking to this process.
func (p *Plugin) Replica() (*replica.Client, error) {
	if !p.Identity.Serves(sdk.KindReplica) {
		return nil, fmt.Errorf("plugin %s (%s) does not serve kind %s", p.Binary.Name, p.Identity, sdk.KindReplica)
	}
	raw, err := p.rpc.Dispense(replica.PluginName)
	if err != nil {
		return nil, fmt.Errorf("plugin %s: dispensing the replica service: %w", p.Binary.Name, err)
	}
	c, ok := raw.(*replica.Client)
	if !ok {
		return nil, fmt.Errorf("plugin %s: replica service has unexpected type %T", p.Binary.Name, raw)
	}
	return c, nil
}

// Bootstrap returns the bootstrap client of a plugin serving that kind.
func (p *Plugin) Bootstrap() (*bootstrap.Client, error) {
	if !p.Identity.Serves(sdk.KindBootstrap) {
		return nil, fmt.Errorf("plugin %s (%s) does not serve kind %s", p.Binary.Name, p.Identity, sdk.KindBootstrap)
	}
	raw, err := p.rpc.Dispense(bootstrap.PluginName)
	if err != nil {
		return nil, fmt.Errorf("plugin %s: dispensing the bootstrap service: %w", p.Binary.Name, err)
	}
	c, ok := raw.(*bootstrap.Client)
	if !ok {
		return nil, fmt.Errorf("plugin %s: bootstrap service has unexpected type %T", p.Binary.Name, raw)
	}
	return c, nil
}

// Kill ends the plugin process (asking go-plugin to stop it gracefully
// first, killing it after two seconds) and waits for go-plugin's goroutines
// that watch it, its stderr reader included. It may be called more than
// once.
func (p *Plugin) Kill() {
	p.killOnce.Do(func() {
		p.client.Kill()
		p.cancel()
		p.stderr.flush()
		p.host.untrack(p)
	})
}

func (h *Host) track(p *Plugin) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.shutdown {
		return false
	}
	h.plugins[p] = struct{}{}
	return true
}

func (h *Host) untrack(p *Plugin) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.plugins, p)
}

// Shutdown closes every supervised plugin and kills every other plugin
// process the host started, and refuses to start new ones. It returns when
// they are gone. go-plugin's CleanupClients is global to the process, so
// the host ends its own clients one by one instead.
func (h *Host) Shutdown() {
	h.mu.Lock()
	h.shutdown = true
	sups := make([]closer, 0, len(h.supervisors))
	for s := range h.supervisors {
		sups = append(sups, s)
	}
	h.mu.Unlock()

	var wg sync.WaitGroup
	for _, s := range sups {
		wg.Go(func() {
			if err := s.Close(context.Background()); err != nil {
				h.logger.Warn("closing supervised plugin at shutdown", "plugin", s.binaryName(), "error", err)
			}
		})
	}
	wg.Wait()

	h.mu.Lock()
	var ready []*Plugin
	for p := range h.plugins {
		if p.ready {
			ready = append(ready, p)
			continue
		}
		// A plugin still in its handshake would hold go-plugin's lock for
		// up to startTimeout: kill its process outright, so that its
		// Launch fails now and cleans up after itself.
		p.cancel()
	}
	h.mu.Unlock()
	for _, p := range ready {
		wg.Go(p.Kill)
	}
	wg.Wait()
}

// pluginEnv is the environment the host gives a plugin before go-plugin
// appends the agent's own and its handshake variables. The last of
// duplicate variables counts, so GOMAXPROCS=1 is a default that a
// GOMAXPROCS in the agent's environment overrides: a plugin serves one
// agent with short calls, and one P spares it the thread hand-offs of an
// idle Go process with a P per core (see cmd/custos).
func pluginEnv(level hclog.Level) []string {
	return []string{"GOMAXPROCS=1", pluginLogLevelEnv + "=" + level.String()}
}
