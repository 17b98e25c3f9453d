//go:build !integration

package zookeeper

// startServer starts nothing in the fast tier: its tests need no server.
func startServer() (stop func(), err error) { return func() {}, nil }
