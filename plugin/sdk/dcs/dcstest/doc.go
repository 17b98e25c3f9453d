// Package dcstest is the conformance kit of DCS plugins. RunConformance
// checks a backend against the contract of dcs.Backend with several
// independent clients of one store; MemoryStore is the in-memory reference
// backend that passes it.
//
// Every real plugin runs the kit against its real server, in process and
// again through its built binary over a go-plugin handshake: RunBinary runs
// the kit through the binary, then RunCrash, which kills plugin processes
// with SIGKILL and checks that their keys expire and that a restarted
// process keeps the leadership the killed one held.
package dcstest
