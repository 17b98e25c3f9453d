package watchdog

import "time"

// FenceArg is the hidden first argument that makes the custos binary the
// fencing process of the process driver: agent.Main hands it to FenceMain
// before it parses anything else.
const FenceArg = "__watchdog-fence"

// The fencing process's protocol, one line each way, over its stdin and
// stdout:
//
//	fencer: ready                          once, at start
//	agent:  arm <timeout ms> <pid> <start time>
//	fencer: ok | error <why>               a refused arm leaves it disarmed
//	agent:  feed                           restarts the countdown
//	fencer: ok
//	agent:  disarm                         the magic close
//	fencer: ok
//
// End of input while disarmed: the fencer exits 0. End of input while
// armed (the agent died or was killed) does not disarm: the countdown goes
// on, as a watchdog device's does without the magic close. When the
// countdown runs out the fencer SIGKILLs the target's process group (the
// postmaster leads its own), provided the pid still has that start time,
// logs what it killed on stderr and exits 1.
const (
	fenceReady  = "ready"
	fenceOK     = "ok"
	fenceError  = "error"
	fenceArm    = "arm"
	fenceFeed   = "feed"
	fenceDisarm = "disarm"

	fenceExitDone  = 0 // input closed while disarmed
	fenceExitFired = 1 // the countdown ran out
	fenceExitUsage = 2
)

// fenceStartTimeout bounds how long the agent waits for a new fencing
// process to say ready: a Go binary starts in milliseconds, so seconds
// mean the machine is in trouble, and the caller is the HA loop.
const fenceStartTimeout = 5 * time.Second

// fenceAnswerTimeout bounds each write to the fencing process and the wait
// for its answer. It answers in microseconds; one that does not answer
// within a second cannot be trusted to fence and is replaced.
const fenceAnswerTimeout = time.Second

// fenceExitTimeout bounds the wait for a fencing process to exit once its
// input is closed or it was killed: only Close and replacing a dead one
// wait for it.
const fenceExitTimeout = 5 * time.Second

// maxFenceTimeout is the longest countdown the fencing process accepts:
// far above any ttl, and short of overflowing a time.Duration.
const maxFenceTimeout = 24 * time.Hour
