// Package testkit holds what custos's tests, benchmarks and demo share to run
// real servers and clusters: launchers for etcd, ZooKeeper, Consul and
// kube-apiserver (package servers), polling helpers (package poll) and a
// harness that forms a cluster of custos members on real PostgreSQL (package
// cluster). It is a module of its own so that the plugins' tests can use it
// without importing core, and core's production code never links it.
package testkit
