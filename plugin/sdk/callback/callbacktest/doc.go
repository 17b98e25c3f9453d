// Package callbacktest is the conformance kit of callback receivers.
// RunConformance checks a callback.Receiver against the contract: Validate
// accepts the receiver's sections and refuses an unknown key by its path;
// delivered events are acted on in order with every field, once each for a
// redelivered Seq; Deliver returns promptly with an error matching
// ctx.Err() when its context is cancelled or its deadline passes, and
// starts nothing with a context already ended; a failure and a refused
// section are reported as such and leave the receiver usable.
//
// The kit drives any receiver whose effect the test can observe: Memory,
// the in-memory reference that passes it; a receiver served in process; a
// plugin binary started with LaunchBinary, as the host starts it; or the
// agent's built-in exec callback, whose script records its arguments.
package callbacktest
