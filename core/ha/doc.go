// Package ha is the HA brain of custos: Decide is a pure function from one
// observation of the world (the cluster as read from the DCS, the local
// PostgreSQL, peer answers, the current time, the outcome of the last
// actions) to an ordered list of actions and a human-readable reason. It
// does no I/O and reads no clock; the controller executes what it returns.
//
// The rules are those of Patroni's HA loop: its cycle decision table, the
// leader race, the promotion, the switchover, the demote modes and the
// rewind decision, so that a mixed cluster behaves as one. Scenario tests in
// testdata/*.txt drive Decide with text descriptions of the world; the
// invariants in invariants.go are checked on every scenario and on randomly
// generated inputs.
package ha
