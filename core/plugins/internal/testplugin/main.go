// Command testplugin is a DCS plugin for the tests of package plugins: it
// serves the in-memory reference backend under the identity name "memory".
//
// It reads knobs from the JSON file <its own path>.json when that exists,
// so that copies of one build behave differently and a test can change the
// behaviour of the next start:
//
//	{"name": "other", "protocol": 2, "crash_at_start": true}
//
// name overrides the identity name, protocol makes it serve (and announce)
// only that protocol version, crash_at_start makes it exit with status 3
// before the handshake. It logs "test plugin starting" at start, and
// "configured" and "ttl set" when the host calls Configure and SetTTL.
//
// Faults for the supervision tests:
//
//	{"hang_while": "/path", "flood_lines": 5000, "big_member_bytes": 5242880}
//
// hang_while makes GetCluster and CompareAndSet hang, deaf to their
// context as a stuck plugin is, while that file exists (logging "hanging");
// flood_lines makes it log that many lines on stderr at start, as fast as
// it can, then "flood done"; big_member_bytes puts a member "big" with a
// value of that size in the store at start.
//
// Callback mode:
//
//	{"callback_events": "/path"}
//
// makes it a callback plugin instead (kind callback, same name rules),
// appending each event it handles to that file as a JSON line; hang_while
// then makes Deliver hang, logging "hanging" with call "deliver".
package main

import (
	"context"
	"encoding/json"
	"os"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"

	"github.com/custos-ha/custos/plugin/sdk"
	"github.com/custos-ha/custos/plugin/sdk/callback"
	"github.com/custos-ha/custos/plugin/sdk/dcs"
	"github.com/custos-ha/custos/plugin/sdk/dcs/dcstest"
)

type knobs struct {
	Name           string `json:"name"`
	Protocol       int    `json:"protocol"`
	CrashAtStart   bool   `json:"crash_at_start"`
	HangWhile      string `json:"hang_while"`
	FloodLines     int    `json:"flood_lines"`
	BigMemberBytes int    `json:"big_member_bytes"`
	CallbackEvents string `json:"callback_events"`
}

func main() {
	k := knobs{Name: "memory", Protocol: sdk.ProtocolVersion}
	if data, err := os.ReadFile(os.Args[0] + ".json"); err == nil {
		if err := json.Unmarshal(data, &k); err != nil {
			panic(err)
		}
	}
	logger := sdk.NewLogger(k.Name)
	if k.CrashAtStart {
		logger.Error("test plugin crashing at start as asked")
		os.Exit(3)
	}
	logger.Info("test plugin starting", "pid", os.Getpid(), "protocol", k.Protocol)
	for i := range k.FloodLines {
		logger.Info("flood", "line", i)
	}
	if k.FloodLines > 0 {
		logger.Info("flood done")
	}

	if k.CallbackEvents != "" {
		callback.Serve(sdk.Identity{Name: k.Name, Version: "0.0.1-test"},
			&fileReceiver{path: k.CallbackEvents, logger: logger, hangWhile: k.HangWhile}, logger)
		return
	}

	store := dcstest.NewMemoryStore()
	defer store.Stop()
	backend := &loggingBackend{Backend: store.NewBackend(), logger: logger, store: store, hangWhile: k.HangWhile, bigMember: k.BigMemberBytes}
	id := sdk.Identity{
		Name:         k.Name,
		Version:      "0.0.1-test",
		Capabilities: map[string]string{dcs.CapMinTTL: "1"},
	}
	if k.Protocol == sdk.ProtocolVersion {
		dcs.Serve(id, backend, logger)
		return
	}
	id.Kinds = []string{sdk.KindDCS}
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: sdk.Handshake,
		VersionedPlugins: map[int]plugin.PluginSet{k.Protocol: {
			sdk.IdentityPluginName: &sdk.IdentityPlugin{Identity: id},
			dcs.PluginName:         &dcs.Plugin{Impl: backend},
		}},
		GRPCServer: sdk.GRPCServer,
		Logger:     logger,
	})
}

// loggingBackend logs the calls whose replay the host's tests check, and
// injects the faults of the knobs.
type loggingBackend struct {
	dcs.Backend
	logger    hclog.Logger
	store     *dcstest.MemoryStore
	hangWhile string
	bigMember int
}

func (b *loggingBackend) Configure(ctx context.Context, req dcs.ConfigureRequest) error {
	err := b.Backend.Configure(ctx, req)
	b.logger.Info("configured", "scope", req.Scope, "member", req.Member, "ttl", req.TTL.String(), "error", err)
	if err == nil && b.bigMember > 0 {
		// Written the way another client of the store would: as member
		// "big" of the same cluster.
		big := req
		big.Member = "big"
		other := b.store.NewBackend()
		if err := other.Configure(ctx, big); err != nil {
			return err
		}
		if err := other.TouchMember(ctx, make([]byte, b.bigMember)); err != nil {
			return err
		}
	}
	return err
}

func (b *loggingBackend) GetCluster(ctx context.Context) (*dcs.Cluster, error) {
	b.hang("get cluster")
	return b.Backend.GetCluster(ctx)
}

func (b *loggingBackend) CompareAndSet(ctx context.Context, key dcs.Key, data []byte, version string) (string, error) {
	b.hang("compare and set")
	return b.Backend.CompareAndSet(ctx, key, data, version)
}

func (b *loggingBackend) hang(call string) { hang(b.logger, b.hangWhile, call) }

// hang blocks while the file at path exists (path "" never), deaf to any
// context, and logs "hanging" with the call's name when it begins to.
func hang(logger hclog.Logger, path, call string) {
	if path == "" {
		return
	}
	for logged := false; ; logged = true {
		if _, err := os.Stat(path); err != nil {
			return
		}
		if !logged {
			logger.Info("hanging", "call", call)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (b *loggingBackend) SetTTL(ctx context.Context, ttl time.Duration) error {
	err := b.Backend.SetTTL(ctx, ttl)
	b.logger.Info("ttl set", "ttl", ttl.String(), "error", err)
	return err
}
