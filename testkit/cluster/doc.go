// Package cluster forms a cluster of custos members on real PostgreSQL: it
// picks the ports, writes each member's configuration, starts the agents
// (as the postgres user when the caller is root, since PostgreSQL refuses to
// run as root), answers which member leads, and stops everything, PostgreSQL
// servers that outlived their agent included.
//
// The end-to-end tests, the demo (custos-demo) and the benchmark build their
// clusters with it. What differs between them is an option: the DCS section
// (the caller starts the DCS), the member count, the HA timings, extra
// configuration, the binaries, where the agents log, and for the benchmark
// the whole configuration and command of another agent (Patroni).
//
// The package is Linux only: agents run under other credentials and die
// with their parent (Pdeathsig), and liveness is read from /proc.
package cluster
