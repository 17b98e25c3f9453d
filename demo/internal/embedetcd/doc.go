// Package embedetcd runs a single-member etcd server inside the calling
// process (go.etcd.io/etcd/server/v3/embed) on loopback ports picked at run
// time. custos-demo uses it as the demo cluster's DCS, so the demo needs
// no etcd installation.
package embedetcd
