// Package controller runs the HA loop: each cycle it observes the DCS and
// the local PostgreSQL, asks ha.Decide what to do, executes the actions in
// order, publishes the member key and the state the REST API serves, and
// logs one line with the reason. It wakes every loop_wait, at once when the
// DCS watch sees the leader key change, when the postmaster exits, when a
// background action finishes, and when asked to (API, reload).
package controller
