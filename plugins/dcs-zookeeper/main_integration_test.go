//go:build integration

package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"

	"github.com/custos-ha/custos/plugin/sdk"
	"github.com/custos-ha/custos/plugin/sdk/dcs"
	"github.com/custos-ha/custos/plugin/sdk/dcs/dcstest"
	"github.com/custos-ha/custos/testkit/servers"
)

var (
	zkServer  *servers.ZooKeeper
	pluginBin string
)

// TestMain starts one ZooKeeper server and builds the plugin binary once.
func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "custos-zk-plugin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	pluginBin = filepath.Join(dir, sdk.BinaryPrefix+"dcs-zookeeper")
	build := exec.Command("go", "build", "-o", pluginBin, ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building the plugin:", err)
		return 1
	}
	zkServer, err = servers.StartZooKeeper(servers.ZooKeeperConfig{})
	if err != nil {
		fmt.Fprintln(os.Stderr, "starting the test ZooKeeper server:", err)
		return 1
	}
	defer zkServer.Stop()
	return m.Run()
}

func testConfig() []byte { return []byte(fmt.Sprintf(`{"hosts": %q}`, zkServer.Addr)) }

func TestConformanceBinary(t *testing.T) {
	target := dcstest.BinaryTarget(t, pluginBin, testConfig())
	dcstest.RunConformance(t, target)
}

// launch starts the plugin binary as its own process, as the host does,
// and returns its backend and the process to kill.
func launch(t *testing.T) (dcs.Backend, *os.Process) {
	t.Helper()
	cmd := exec.Command(pluginBin)
	client := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig: sdk.Handshake,
		VersionedPlugins: map[int]plugin.PluginSet{sdk.ProtocolVersion: {
			sdk.IdentityPluginName: &sdk.IdentityPlugin{},
			dcs.PluginName:         &dcs.Plugin{},
		}},
		Cmd:              cmd,
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		AutoMTLS:         true,
		Logger:           hclog.New(&hclog.LoggerOptions{Name: "plugin", Level: hclog.Warn, Output: os.Stderr}),
	})
	t.Cleanup(client.Kill)
	rpc, err := client.Client()
	if err != nil {
		t.Fatalf("starting the plugin: %v", err)
	}
	raw, err := rpc.Dispense(dcs.PluginName)
	if err != nil {
		t.Fatal(err)
	}
	return raw.(dcs.Backend), cmd.Process
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func configure(t *testing.T, b dcs.Backend, scope, member string, ttl time.Duration) {
	t.Helper()
	err := b.Configure(ctxT(t), dcs.ConfigureRequest{
		Scope: scope, Member: member, TTL: ttl, RetryTimeout: time.Second, Config: testConfig(),
	})
	if err != nil {
		t.Fatalf("configuring %s: %v", member, err)
	}
}

func rawConn(t *testing.T) *zk.Conn {
	t.Helper()
	conn, events, err := zk.Connect([]string{zkServer.Addr}, 10*time.Second, zk.WithLogInfo(false))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn.Close()
		for range events {
		}
	})
	deadline := time.After(10 * time.Second)
	for conn.State() != zk.StateHasSession {
		select {
		case <-events:
		case <-deadline:
			t.Fatal("raw zookeeper connection did not get a session")
		}
	}
	return conn
}

func randomScope(t *testing.T) string {
	t.Helper()
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return "killed-" + hex.EncodeToString(b[:])
}

// owners returns the ephemeralOwner of the leader and member a znodes, 0
// for an absent one.
func owners(t *testing.T, raw *zk.Conn, base string) (leader, member int64) {
	t.Helper()
	for i, p := range []string{base + "/leader", base + "/members/a"} {
		ok, st, err := raw.Exists(p)
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			if i == 0 {
				leader = st.EphemeralOwner
			} else {
				member = st.EphemeralOwner
			}
		}
	}
	return leader, member
}

// TestKilledPlugin kills plugin processes with SIGKILL: their leader and
// member znodes go once the server expires the session, about one TTL
// later; a new process of the same member that renews in time keeps them,
// moved to its own session.
func TestKilledPlugin(t *testing.T) {
	const ttl = 3 * time.Second
	raw := rawConn(t)

	t.Run("KeysExpire", func(t *testing.T) {
		t.Parallel()
		scope := randomScope(t)
		base := "/service/" + scope
		a, proc := launch(t)
		configure(t, a, scope, "a", ttl)
		if _, err := a.AcquireLeader(ctxT(t)); err != nil {
			t.Fatal(err)
		}
		if err := a.TouchMember(ctxT(t), []byte(`{"state":"running"}`)); err != nil {
			t.Fatal(err)
		}
		if l, m := owners(t, raw, base); l == 0 || l != m {
			t.Fatalf("before the kill: leader owner 0x%x, member owner 0x%x", l, m)
		}
		killed := time.Now()
		if err := proc.Kill(); err != nil {
			t.Fatal(err)
		}
		for {
			l, m := owners(t, raw, base)
			elapsed := time.Since(killed)
			if l == 0 && m == 0 {
				// The server expires a session between timeout minus the
				// last ping interval (ttl/3) and timeout plus one tick.
				if elapsed < ttl/2 {
					t.Fatalf("keys gone %v after the kill, before the session timeout %v", elapsed, ttl)
				}
				t.Logf("keys gone %v after the kill (ttl %v)", elapsed.Round(10*time.Millisecond), ttl)
				break
			}
			if elapsed > ttl+2*time.Second {
				t.Fatalf("leader owner 0x%x, member owner 0x%x still there %v after the kill", l, m, elapsed)
			}
			time.Sleep(50 * time.Millisecond) // polling interval
		}
	})

	t.Run("RestartedProcessKeepsKeys", func(t *testing.T) {
		t.Parallel()
		scope := randomScope(t)
		base := "/service/" + scope
		first, proc := launch(t)
		configure(t, first, scope, "a", ttl)
		if _, err := first.AcquireLeader(ctxT(t)); err != nil {
			t.Fatal(err)
		}
		if err := first.TouchMember(ctxT(t), []byte(`{"state":"running"}`)); err != nil {
			t.Fatal(err)
		}
		oldSession, _ := owners(t, raw, base)
		killed := time.Now()
		if err := proc.Kill(); err != nil {
			t.Fatal(err)
		}

		a, _ := launch(t)
		configure(t, a, scope, "a", ttl)
		renew := func() {
			t.Helper()
			if err := a.RenewLeader(ctxT(t)); err != nil {
				t.Fatalf("RenewLeader: %v", err)
			}
			if err := a.TouchMember(ctxT(t), []byte(`{"state":"running"}`)); err != nil {
				t.Fatalf("TouchMember: %v", err)
			}
		}
		renew()
		l, m := owners(t, raw, base)
		if l == 0 || l == oldSession || l != m {
			t.Fatalf("after the new process renewed: leader owner 0x%x, member owner 0x%x, old session 0x%x", l, m, oldSession)
		}
		c, err := a.GetCluster(ctxT(t))
		if err != nil {
			t.Fatal(err)
		}
		if want := fmt.Sprintf("0x%x", l); c.Leader == nil || c.Leader.Name != "a" || c.Leader.Session != want {
			t.Fatalf("GetCluster leader %+v, want a on %s", c.Leader, want)
		}
		// Outlive the old session's expiry, renewing as an agent does.
		nextRenew := time.Now().Add(ttl / 3)
		for time.Since(killed) < ttl+2*time.Second {
			if time.Now().After(nextRenew) {
				renew()
				nextRenew = time.Now().Add(ttl / 3)
			}
			if nl, nm := owners(t, raw, base); nl != l || nm != l {
				t.Fatalf("%v after the kill: leader owner 0x%x, member owner 0x%x, want 0x%x", time.Since(killed), nl, nm, l)
			}
			time.Sleep(100 * time.Millisecond) // polling interval
		}
		if err := a.DeleteLeader(ctxT(t)); err != nil {
			t.Fatal(err)
		}
		if _, err := a.AcquireLeader(ctxT(t)); err != nil {
			t.Fatal(err)
		}
	})
}
