// Package servers runs throwaway servers for custos's tests and benchmark,
// each in its own process on loopback ports picked at run time: etcd
// (Debian's 3.4, or the 3.6 of the cache) alone or as a cluster of
// several members, ZooKeeper (Debian's), a Consul dev agent,
// kube-apiserver with its etcd 3.6, and a TCP proxy that can stall (all
// connections or one source's) and add latency. Every launcher takes a
// config whose zero value does the usual thing, returns an error that says
// what to install or build when a binary is missing, retries when another
// process takes a chosen port first, and reports a failed start with the
// tail of the server's log.
// The servers die with the process that started them.
//
// The Consul, kube-apiserver and etcd 3.6 binaries are built from the
// wrapper modules in tools/ into the cache (CacheDir) by .ci/build-servers
// (`make servers`); a launcher that finds such a build in progress waits
// for it.
package servers
