// Package consultest starts a throwaway Consul agent in dev mode (one
// server, in memory) for the plugin's integration tests: the binary that
// .ci/build-consul builds into the cache (or CUSTOS_CONSUL_BIN), loopback
// ports picked at run time, a data directory of the caller's.
package consultest
