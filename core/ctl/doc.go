// Package ctl is custosctl, the operator's command line (cobra commands and
// their output formats); cmd/custosctl only calls Main.
//
// custosctl reads the DCS the way patronictl does, but through the same DCS
// plugin binaries as the agent (core/plugins), so every DCS custos supports
// works here without client code of its own. The plugin is configured from
// an agent's TOML file (-c) or a DCS URL (-d), with a member name of its own
// (custosctl-<pid>); reading commands only ever call GetCluster.
//
// Commands:
//
//   - list: Patroni 3.0.2's `patronictl list` table (Member, Host, Role,
//     State, TL, Lag in MB; -e adds Pending restart, Scheduled restart and
//     Tags) as pretty, tsv, json or yaml, once or watching;
//   - demo: a throwaway cluster on this machine: an embedded etcd and
//     custos agents as separate processes, until Ctrl-C.
package ctl
