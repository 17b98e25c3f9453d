//go:build integration

package zookeeper

import (
	"fmt"

	"github.com/custos-ha/custos/testkit/servers"
)

// zkServer is the test binary's ZooKeeper server.
var zkServer *servers.ZooKeeper

// startServer starts one ZooKeeper server for the whole test binary.
func startServer() (stop func(), err error) {
	zkServer, err = servers.StartZooKeeper(servers.ZooKeeperConfig{})
	if err != nil {
		return nil, fmt.Errorf("starting the test ZooKeeper server: %w", err)
	}
	return zkServer.Stop, nil
}
