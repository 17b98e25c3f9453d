// Package replicatest is the conformance kit of replica plugins.
// RunConformance checks a Creator against the contract of
// replica.Creator with a real PostgreSQL primary as the source: a copy
// starts as a streaming standby, a non-empty target is refused, a bad
// source fails in bounded time, a cancelled copy leaves no process and no
// partial data behind, progress arrives, and configuration problems name
// their keys.
//
// The caller provides the primary (StartPrimary starts one for a test) and
// runs the kit in process and again through its built binary
// (LaunchBinary, BinaryTarget). PostgreSQL refuses to run as root:
// RunAsPostgres in TestMain runs the test binary as the postgres OS user
// when it is started as root.
package replicatest
