// Package sim is a deterministic simulation of whole custos clusters. Each
// member runs the real ha.Decide inside a model of the controller's loop
// (DCS reads and writes with the lease deadline, the gathering of peers'
// answers, background actions, the wait for the next cycle); the DCS,
// PostgreSQL, the network, the client and time are simulated. A seeded
// scheduler injects faults (machine and postmaster crashes, agents killed
// or frozen, members cut from the DCS or from each other, the DCS down or
// slow, switchovers, pauses) and checks after every step that at most one
// member accepts writes, that no commit acknowledged in synchronous mode
// is missing from a primary, that every decision keeps ha's safety
// invariants, and that the cluster settles once the faults end.
//
// A run is a function of its seed: a failure names the seed, and running
// that seed again replays it with its whole trace.
package sim
