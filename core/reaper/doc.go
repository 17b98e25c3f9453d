// Package reaper makes the agent a child subreaper and reaps the orphans it
// adopts.
//
// When a postmaster is SIGKILLed its backends live on for a moment and then
// exit; when the agent was started by a PID 1 that does not reap (containers,
// some init shims), they would stay zombies for good. With
// PR_SET_CHILD_SUBREAPER such orphans are re-parented to the agent instead of
// PID 1, and Start's goroutine waits for them.
//
// The subtle part is not to steal the exit status of the agent's own
// children, which os/exec waits for. A zombie child is left alone when
//
//   - it leads its own process group but not its own session: every command
//     the agent starts goes through Prepare, which sets Setpgid. PostgreSQL
//     backends call setsid(), so they lead their own session and are not
//     mistaken for direct children; or
//   - the agent holds a pidfd for it: since Go 1.23, os/exec keeps a pidfd
//     for every child it starts until Wait returns, so a child started
//     without Prepare (a go-plugin plugin, say) is safe too on kernels with
//     pidfd support.
//
// Everything else that is a zombie child of the agent was adopted and is
// reaped with wait4 on its pid only.
package reaper
