// Package watchdog fences the primary: when the agent stops feeding the
// watchdog while its PostgreSQL is the primary, something outside the
// agent ends that primary before the leader key expires and another member
// promotes.
//
// Three drivers, chosen by [watchdog] mode and driver:
//
//   - the Linux watchdog device (driver "default", /dev/watchdog): opened
//     and given its timeout on Arm, fed with WDIOC_KEEPALIVE, closed with
//     the magic close on Disarm. Not fed in time, the kernel or the hardware
//     resets the whole machine;
//   - a fencing process (driver "process"): the custos binary re-executed
//     with the hidden argument FenceArg, in its own session, fed over a
//     pipe. Not fed in time, it SIGKILLs the postmaster's process group.
//     It covers a frozen or deadlocked agent, not a frozen machine;
//   - nothing (mode "off").
//
// Watchdog is what the HA loop uses: Healthy before it races for the
// leader key, Arm before it promotes or keeps a primary, Feed after each
// renewal, Disarm on demotion, pause and shutdown. Mode "required" makes
// every failure an error; "automatic" logs it once and goes on without a
// watchdog, as Patroni does.
package watchdog
