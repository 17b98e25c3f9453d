//go:build integration

package zookeeper

import (
	"fmt"
	"os"

	"github.com/custos-ha/custos/plugins/dcs-zookeeper/internal/zkserver"
)

// zkServer is the test binary's ZooKeeper server.
var zkServer *zkserver.Server

// startServer starts one ZooKeeper server for the whole test binary.
func startServer() (stop func(), err error) {
	dir, err := os.MkdirTemp("", "custos-zk-")
	if err != nil {
		return nil, err
	}
	zkServer, err = zkserver.Start(dir)
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("starting the test ZooKeeper server: %w", err)
	}
	return func() {
		zkServer.Stop()
		os.RemoveAll(dir)
	}, nil
}
