package sdk

import (
	"os"
	"sort"
	"strings"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
)

// MaxMessageSize caps one gRPC message between the host and a plugin, both
// ways, on both sides (GRPCServer, GRPCDialOptions). gRPC's default receive
// limit, 4 MiB, would make a cluster read fail as a whole, on every member
// and for as long as the value stays, once one member value is that large
// or a few members of 1 MiB add up to it. 64 MiB carries any cluster a DCS
// with its default limits can hold at a reasonable member count (etcd
// takes 1.5 MiB per request, ZooKeeper 1 MiB per node, Consul 512 KiB per
// value, Kubernetes 1.5 MiB per object); past it, the DCS SDK leaves the
// largest values out of the read and names them (dcs.MaxValueSize) rather
// than fail it.
const MaxMessageSize = 64 << 20

// GRPCServer is the gRPC server of every plugin: go-plugin's, with the
// message size limits of MaxMessageSize.
func GRPCServer(opts []grpc.ServerOption) *grpc.Server {
	opts = append(opts, grpc.MaxRecvMsgSize(MaxMessageSize), grpc.MaxSendMsgSize(MaxMessageSize))
	return grpc.NewServer(opts...)
}

// GRPCDialOptions are the host's options for its connection to a plugin
// (go-plugin's ClientConfig.GRPCDialOptions): the message size limits of
// MaxMessageSize.
func GRPCDialOptions() []grpc.DialOption {
	return []grpc.DialOption{grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(MaxMessageSize), grpc.MaxCallSendMsgSize(MaxMessageSize))}
}

// ProtocolVersion is the newest plugin protocol major this SDK speaks. The
// host offers every major it still serves and go-plugin picks the highest
// one both sides know. Optional behaviour is announced as a capability, never
// by bumping this number.
const ProtocolVersion = 1

// Plugin kinds.
const (
	KindDCS       = "dcs"
	KindReplica   = "replica"
	KindBootstrap = "bootstrap"
	KindCallback  = "callback"
)

// BinaryPrefix starts the file name of every plugin binary:
// custos-plugin-<name>.
const BinaryPrefix = "custos-plugin-"

// Handshake is the go-plugin handshake shared by the host and every plugin.
// The cookie only keeps a plugin binary from being run by hand by mistake;
// it is not a security feature.
var Handshake = plugin.HandshakeConfig{
	ProtocolVersion:  ProtocolVersion,
	MagicCookieKey:   "CUSTOS_PLUGIN_MAGIC_COOKIE",
	MagicCookieValue: "4f1a7c2e-custos-plugin-9d3b",
}

// Identity is what a plugin tells the host about itself.
type Identity struct {
	// Name is the plugin's short name ("etcd3"); it selects its configuration
	// section ([dcs.etcd3]).
	Name string
	// Kinds lists the kinds served (KindDCS, ...).
	Kinds []string
	// Version is the plugin's release version.
	Version string
	// Capabilities announce optional behaviour, see the kind's package for the
	// well-known keys.
	Capabilities map[string]string
}

// Serves reports whether the plugin serves the kind.
func (id Identity) Serves(kind string) bool {
	for _, k := range id.Kinds {
		if k == kind {
			return true
		}
	}
	return false
}

// String renders the identity for logs: "etcd3 1.0.0 (dcs)".
func (id Identity) String() string {
	kinds := append([]string(nil), id.Kinds...)
	sort.Strings(kinds)
	return id.Name + " " + id.Version + " (" + strings.Join(kinds, ",") + ")"
}

// NewLogger returns the logger a plugin should use: JSON lines on stderr,
// which the host parses and re-emits through its own logger (stdout carries
// the go-plugin handshake and must not be written to).
func NewLogger(name string) hclog.Logger {
	level := hclog.LevelFromString(os.Getenv("CUSTOS_PLUGIN_LOG_LEVEL"))
	if level == hclog.NoLevel {
		level = hclog.Info
	}
	return hclog.New(&hclog.LoggerOptions{
		Name:       name,
		Level:      level,
		Output:     os.Stderr,
		JSONFormat: true,
	})
}

// Serve runs a plugin binary's main loop: it serves the identity call and the
// given kinds' plugins under the current protocol version and returns when
// the host goes away. It is the last call of a plugin's main.
func Serve(id Identity, plugins plugin.PluginSet, logger hclog.Logger) {
	set := plugin.PluginSet{IdentityPluginName: &IdentityPlugin{Identity: id}}
	for name, p := range plugins {
		set[name] = p
	}
	if logger == nil {
		logger = NewLogger(id.Name)
	}
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig:  Handshake,
		VersionedPlugins: map[int]plugin.PluginSet{ProtocolVersion: set},
		GRPCServer:       GRPCServer,
		Logger:           logger,
	})
}
