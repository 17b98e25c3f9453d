// Package callback is the contract of custos callback plugins: the
// Receiver interface a plugin implements to be told about a member's
// lifecycle events (Patroni's on_start, on_stop, on_restart, on_reload and
// on_role_change callbacks), the Event it receives, its gRPC client and
// server, and the sentinel errors.
//
// The host delivers a member's events one at a time, in order, each with a
// deadline, at least once: an event whose delivery a plugin crash cut short
// comes again with the same Seq, and a Receiver acts on a Seq once for as
// long as it lives. A plugin's configuration is the JSON of its
// [callback.<name>] section, given to Validate and to every Deliver.
//
// A plugin binary's main calls Serve; the conformance kit in callbacktest
// checks a Receiver against this contract, in process and through its
// built binary.
package callback
