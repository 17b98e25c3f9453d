// Package callbacks runs what the agent tells the outside world about its
// member's lifecycle, and the commands it waits for at a few steps of it.
//
// A [Dispatcher] numbers every event (on_start, on_stop, on_restart,
// on_reload, on_role_change) and hands it to each configured sink: the
// built-in [Exec] receiver, which runs the scripts of
// [postgresql.callbacks], and the callback plugins of the [callback.<name>]
// sections. Emit never blocks the HA loop: each sink has an unbounded queue
// and a goroutine that delivers its events one at a time, in order, each
// within the sink's timeout. A delivery that did not reach a live receiver
// (its plugin process died, [ErrReceiverGone]) is made again with the same
// sequence number; any other failure is logged and the sink goes on with
// the next event.
//
// [Hooks] runs the synchronous hooks (pre_promote, before_stop,
// post_bootstrap) and [Run] any such command: split into words as a POSIX
// shell would, in a process group of its own that is killed as a whole when
// the caller gives up or the timeout passes.
package callbacks
