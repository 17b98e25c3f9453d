// Package agent is the composition root of the custos agent: it loads the
// configuration, starts the plugin host and the DCS plugin, PostgreSQL's
// manager, the HA controller and the REST API, wires them together, and
// shuts them down in order.
package agent
