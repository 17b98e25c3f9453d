// Package dcs is the contract of custos DCS plugins: the Backend interface a
// plugin implements, its gRPC client and server, and the sentinel errors.
//
// A backend stores opaque bytes with versions under Patroni's layout
// /<namespace>/<scope>/{initialize,config,leader,members/<name>,failover,
// sync,history,status,failsafe} and maps them onto its store natively
// (leases, sessions, ephemeral nodes, resource versions). The agent's core
// owns the value formats and every decision; a backend stores, locks and
// watches, and never decides.
package dcs

import (
	"context"
	"time"
)

// Key names a cluster-wide key under the cluster prefix. The leader and
// member keys have their own operations.
type Key string

// The cluster-wide keys, named as in Patroni's layout.
const (
	KeyInitialize Key = "initialize"
	KeyConfig     Key = "config"
	KeyFailover   Key = "failover"
	KeySync       Key = "sync"
	KeyHistory    Key = "history"
	KeyStatus     Key = "status"
	KeyFailsafe   Key = "failsafe"
)

// Keys lists the cluster-wide keys in layout order.
var Keys = []Key{KeyInitialize, KeyConfig, KeyFailover, KeySync, KeyHistory, KeyStatus, KeyFailsafe}

// Relative paths of the lock and member keys under the cluster prefix.
const (
	LeaderPath  = "leader"
	MembersPath = "members/"
)

// Capability keys a DCS plugin may announce in its identity.
const (
	// CapMinTTL is the smallest TTL the backend honours, in whole seconds
	// (Consul: 10). A shorter TTL given to Configure is raised to it.
	CapMinTTL = "dcs.min_ttl_seconds"
	// CapExpiryDelay is how long after its TTL an unrenewed key may still be
	// visible, in milliseconds, beyond the TTL itself (Consul invalidates a
	// session up to 2xTTL after its last renewal).
	CapExpiryDelay = "dcs.expiry_delay_ms"
	// CapClientSideTTL is "true" when readers judge leader expiry on their own
	// clock (Kubernetes) instead of the server deleting the key.
	CapClientSideTTL = "dcs.client_side_ttl"
)

// ConfigureRequest binds a backend to a cluster and a member.
type ConfigureRequest struct {
	// Scope is the cluster name.
	Scope string
	// Namespace is the path prefix, "/service" by default.
	Namespace string
	// Member is this agent's member name; the leader and member keys this
	// backend writes carry it.
	Member string
	// TTL is the lifetime of the leader and member keys without renewal.
	TTL time.Duration
	// RetryTimeout bounds how long one operation may retry internally.
	RetryTimeout time.Duration
	// Config is the JSON of the plugin's TOML section ([dcs.<name>]).
	Config []byte
}

// Value is a stored value and the version it was read at.
type Value struct {
	Data []byte
	// Version is the backend's native version as a string (etcd
	// mod_revision, ZooKeeper stat.version, Consul ModifyIndex, Kubernetes
	// resourceVersion). It is what CompareAndSet compares with.
	Version string
}

// Leader is the holder of the leader key.
type Leader struct {
	// Name is the member name stored in the key.
	Name    string
	Version string
	// Session identifies the lease, session or owner the key lives on.
	Session string
}

// Member is one members/<name> key.
type Member struct {
	Name    string
	Data    []byte
	Version string
	Session string
}

// MaxValueSize is the largest value the SDK carries between a plugin and
// the host. The host refuses to write a larger one, with an error naming
// the key and the size; a larger one written by another client is left out
// of GetCluster (the key reads as absent) and listed in Cluster.Omitted,
// so that one value nobody can use does not make every read of the cluster
// fail. It is above what any DCS stores with its default limits, and the
// conformance kit's 1 MiB values pass.
const MaxValueSize = 4 << 20

// OmittedValue is a value left out of a read: its path relative to the
// cluster prefix ("members/node1", "config", "leader") and its size in
// bytes.
type OmittedValue struct {
	Path string
	Size int
}

// Cluster is one consistent read of everything under the cluster prefix.
// Absent keys are nil.
type Cluster struct {
	Initialize *Value
	Config     *Value
	Leader     *Leader
	Members    []Member
	Failover   *Value
	Sync       *Value
	History    *Value
	Status     *Value
	Failsafe   *Value
	// Omitted lists the values left out because they are too large to
	// carry (see MaxValueSize); the SDK fills it, a backend leaves it
	// empty.
	Omitted []OmittedValue
}

// Get returns the value of a cluster-wide key, nil when absent.
func (c *Cluster) Get(k Key) *Value {
	switch k {
	case KeyInitialize:
		return c.Initialize
	case KeyConfig:
		return c.Config
	case KeyFailover:
		return c.Failover
	case KeySync:
		return c.Sync
	case KeyHistory:
		return c.History
	case KeyStatus:
		return c.Status
	case KeyFailsafe:
		return c.Failsafe
	}
	return nil
}

// Put stores the value of a cluster-wide key; nil marks it absent.
func (c *Cluster) Put(k Key, v *Value) {
	switch k {
	case KeyInitialize:
		c.Initialize = v
	case KeyConfig:
		c.Config = v
	case KeyFailover:
		c.Failover = v
	case KeySync:
		c.Sync = v
	case KeyHistory:
		c.History = v
	case KeyStatus:
		c.Status = v
	case KeyFailsafe:
		c.Failsafe = v
	}
}

// Member returns the member with the name, or nil.
func (c *Cluster) Member(name string) *Member {
	for i := range c.Members {
		if c.Members[i].Name == name {
			return &c.Members[i]
		}
	}
	return nil
}

// EventType says what happened to a key.
type EventType int

// Event types.
const (
	EventPut EventType = iota + 1
	EventDelete
)

func (t EventType) String() string {
	switch t {
	case EventPut:
		return "put"
	case EventDelete:
		return "delete"
	}
	return "unknown"
}

// Event is one change under the cluster prefix.
type Event struct {
	Type EventType
	// Path is relative to the cluster prefix: "leader", "members/node1",
	// "config", ...
	Path    string
	Version string
}

// Backend is what a DCS plugin implements. Every method takes the caller's
// context first and must return promptly when it is cancelled. Errors that
// carry a meaning are the package's sentinels (wrapped as the backend
// likes); anything else is treated as the DCS being in trouble.
//
// TTL semantics: the leader and member keys written by a backend live on
// one lease/session per member and disappear (or read as expired) once TTL
// has passed without RenewLeader or TouchMember, as seen by every other
// client, including when the plugin process is killed.
type Backend interface {
	// Validate checks a configuration section without connecting anywhere
	// and returns a *sdk.ConfigError listing every problem.
	Validate(ctx context.Context, config []byte) error
	// Configure validates the section, connects and binds the backend to a
	// cluster and member. It is called once, before any other operation
	// except Validate, and again by the host after a plugin restart.
	Configure(ctx context.Context, req ConfigureRequest) error
	// SetTTL changes the TTL used from the next renewal on.
	SetTTL(ctx context.Context, ttl time.Duration) error

	// GetCluster reads every key under the cluster prefix at once.
	GetCluster(ctx context.Context) (*Cluster, error)

	// AcquireLeader creates the leader key with this member's name, only if
	// no leader key exists (ErrExists otherwise). Exactly one of any number
	// of concurrent callers wins.
	AcquireLeader(ctx context.Context) (version string, err error)
	// RenewLeader resets the TTL of the leader key held by this member. If
	// the key holds another member's name, it fails with ErrVersionMismatch
	// and changes nothing; if the key is gone, it is created again as by
	// AcquireLeader (ErrExists if someone else got it first).
	RenewLeader(ctx context.Context) error
	// TakeLeader writes the leader key with this member's name
	// unconditionally.
	TakeLeader(ctx context.Context) error
	// DeleteLeader removes the leader key only if it holds this member's
	// name; ErrVersionMismatch if it holds another name; nil if absent.
	DeleteLeader(ctx context.Context) error
	// TouchMember writes members/<member> with the data and resets the TTL
	// of this member's keys.
	TouchMember(ctx context.Context, data []byte) error

	// CompareAndSet writes a cluster-wide key if its current version equals
	// version; an empty version means "only if absent". A create-only write
	// on a present key is ErrExists; a version mismatch is
	// ErrVersionMismatch, or ErrNotFound when the key is gone. It returns the
	// new version.
	CompareAndSet(ctx context.Context, key Key, data []byte, version string) (string, error)
	// CompareAndDelete deletes a cluster-wide key if its version equals
	// version (ErrVersionMismatch or ErrNotFound otherwise); an empty
	// version deletes unconditionally, and then an absent key is not an
	// error.
	CompareAndDelete(ctx context.Context, key Key, version string) error
	// Set writes a cluster-wide key unconditionally.
	Set(ctx context.Context, key Key, data []byte) error
	// DeleteCluster removes everything under the cluster prefix.
	DeleteCluster(ctx context.Context) error

	// Watch calls fn for every change under the cluster prefix, including
	// the expiry of the leader key, until ctx is cancelled (it then returns
	// nil) or the watch breaks (it returns the error; the caller re-reads
	// and watches again). fn is called from one goroutine at a time and
	// must not block for long.
	Watch(ctx context.Context, fn func(Event)) error

	// Close releases the backend's connections. It does not delete the
	// leader key: callers release it with DeleteLeader first.
	Close(ctx context.Context) error
}

// Prefix returns the cluster prefix "/<namespace>/<scope>/" with repeated
// slashes collapsed; an empty namespace means "/service".
func Prefix(namespace, scope string) string {
	if namespace == "" {
		namespace = DefaultNamespace
	}
	p := "/" + namespace + "/" + scope + "/"
	out := make([]byte, 0, len(p))
	for i := 0; i < len(p); i++ {
		if p[i] == '/' && len(out) > 0 && out[len(out)-1] == '/' {
			continue
		}
		out = append(out, p[i])
	}
	return string(out)
}

// DefaultNamespace is Patroni's default namespace.
const DefaultNamespace = "/service"
