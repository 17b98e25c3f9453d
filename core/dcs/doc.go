// Package dcs is the agent's side of the DCS: it wraps the DCS plugin's
// Backend with per-call timeouts, decodes reads into cluster.Cluster,
// publishes /status only when it changed, and runs the watch that wakes
// the HA loop the moment the leader key changes.
package dcs
