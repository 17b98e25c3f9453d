// Command chaos runs custos clusters under real faults and says what they
// cost: real agents, real PostgreSQL in synchronous mode, a three-member
// etcd cluster, and TCP proxies on loopback in front of every link a
// fault cuts or slows (the kernel here has no netem). Each scenario runs a
// number of times on a cluster of its own; every run
//
//   - waits for a whole cluster (a leader, every replica streaming, a
//     synchronous standby), runs a writer that records every commit
//     acknowledged to it and a sampler that asks every member, all the
//     time, whether it accepts a write;
//   - injects the fault, holds it (until another member took over, or a
//     fixed time for faults that need no failover), heals it;
//   - measures the convergence time (fault healed -> whole cluster again),
//     then checks that every acknowledged commit is on the leader and
//     counts the windows in which two members accepted writes.
//
// `make chaos` prints one table per scenario (docs/reliability.md); the
// integration test TestChaosShort runs each scenario once.
package main
