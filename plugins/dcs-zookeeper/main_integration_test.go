//go:build integration

package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/custos-ha/custos/plugin/sdk"
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

// TestBinary runs the conformance kit and the crash tests through the
// built plugin binary: a killed process's znodes go when the server expires
// its session; a new process of the same member moves the leader znode to
// its own session in time and keeps it.
func TestBinary(t *testing.T) {
	dcstest.RunBinary(t, dcstest.Binary{Path: pluginBin, Config: testConfig()})
}
