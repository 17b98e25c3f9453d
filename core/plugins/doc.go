// Package plugins is the host side of the custos plugin system: it finds
// plugin binaries in the plugin directory, checks that nobody but their
// owner can change them (directory and file modes, optional sha256 per
// binary), starts them over go-plugin with AutoMTLS and protocol version
// negotiation, asks every plugin who it is (the identity call), re-emits
// their log lines through the agent's logger, and supervises the DCS and
// callback plugins: a plugin process that dies is restarted with capped
// backoff (a DCS plugin is handed its last configuration again), while
// callers wait for it and, past their deadline, see dcs.ErrUnavailable or
// callbacks.ErrReceiverGone.
//
// A Host owns every process it starts; Host.Shutdown ends them all.
package plugins
