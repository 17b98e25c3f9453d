// Package etcdtest starts a throwaway single-member etcd server for the
// plugin's integration tests: the binary from CUSTOS_ETCD_BIN or PATH (the
// Debian etcd-server package), loopback ports picked at run time, a data
// directory of the caller's.
package etcdtest
