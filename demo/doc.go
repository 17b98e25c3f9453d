// Command custos-demo runs a throwaway custos cluster on this machine until
// Ctrl-C: an embedded etcd (package internal/embedetcd) and custos agents
// as separate processes, each with its own PostgreSQL, formed with the
// cluster harness of testkit/cluster. `make demo` builds and runs it.
//
// It is a module of its own so that the etcd server it embeds is linked
// neither into custosctl nor required by core.
package main
