// Command bench runs custos and Patroni 3.0.2 side by side and prints what
// users feel: write downtime of a planned switchover (A), recovery and data
// loss after a node crash (B), recovery after a postmaster crash (C), REST
// health-check throughput (D) and the idle footprint of the agents (E).
//
// Both clusters have three members on the same PostgreSQL binaries and the
// same etcd (a fresh single-member server per cluster, data in /dev/shm),
// with the same ttl, loop_wait and retry_timeout, and run one after the
// other. Run it as root (`make bench`): agents and PostgreSQL then run as
// the postgres OS user. Run by another user, everything runs as that user.
//
//	go run ./bench -bin ../bin            # from the bench module
//	make bench BENCH_ARGS="-trials 2 -idle 10s -profiles fast"
//
// The table goes to stdout (and as Markdown to -markdown); progress, with
// each trial's milestones, goes to stderr.
package main
