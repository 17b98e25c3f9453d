package sim

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// A scenario file is a run written down: the options line (as Options
// prints itself) and the fault schedule, one injection a line (as
// Injection prints itself); # starts a comment.
//
//	options seed=7 members=3 ttl=10s loop_wait=2s retry_timeout=4s ...
//	at 21.5s crash pg1 for 12s
//	at 25s cut pg2 pg3 for 40s
//	at 31.2s slow-dcs pg2 latency 6s for 20s
//	at 40s switchover pg2 pg3
//	at 70s heal
//
// A failing run is shrunk to the smallest schedule that still fails the
// same way and printed as a scenario file; kept under testdata, it runs
// in every `make test`.

// FormatScenario writes a run as a scenario file.
func FormatScenario(o Options, schedule []Injection) string {
	var b strings.Builder
	fmt.Fprintf(&b, "options %s\n", o)
	for _, in := range schedule {
		fmt.Fprintf(&b, "%s\n", in)
	}
	return b.String()
}

// ParseScenario reads a scenario file.
func ParseScenario(text string) (Options, error) {
	var o Options
	haveOptions := false
	for i, line := range strings.Split(text, "\n") {
		if j := strings.Index(line, "#"); j >= 0 {
			line = line[:j]
		}
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		var err error
		switch f[0] {
		case "options":
			o, err = parseOptions(f[1:])
			haveOptions = true
		case "at":
			var in Injection
			in, err = parseInjection(f[1:])
			if err == nil && len(o.Schedule) > 0 && in.At < o.Schedule[len(o.Schedule)-1].At {
				err = fmt.Errorf("at %s comes before the line above", fmtDur(in.At))
			}
			o.Schedule = append(o.Schedule, in)
		default:
			err = fmt.Errorf("unknown line %q (want options or at)", f[0])
		}
		if err != nil {
			return Options{}, fmt.Errorf("line %d: %w", i+1, err)
		}
	}
	switch {
	case !haveOptions:
		return Options{}, fmt.Errorf("no options line")
	case len(o.Schedule) == 0:
		return Options{}, fmt.Errorf("no injection")
	}
	return o, nil
}

func parseOptions(fields []string) (Options, error) {
	o := Options{Steps: 1 << 40}
	for _, kv := range fields {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return o, fmt.Errorf("option %q is not key=value", kv)
		}
		var err error
		switch k {
		case "seed":
			o.Seed, err = strconv.ParseUint(v, 10, 64)
		case "members":
			o.Members, err = strconv.Atoi(v)
		case "ttl":
			o.TTL, err = time.ParseDuration(v)
		case "loop_wait":
			o.LoopWait, err = time.ParseDuration(v)
		case "retry_timeout":
			o.RetryTimeout, err = time.ParseDuration(v)
		case "primary_start_timeout":
			o.PrimaryStartTimeout, err = time.ParseDuration(v)
		case "use_pg_rewind":
			o.UsePgRewind, err = strconv.ParseBool(v)
		case "synchronous_mode":
			o.SyncMode = v
		case "strict":
			o.SyncStrict, err = strconv.ParseBool(v)
		case "failsafe_mode":
			o.FailsafeMode, err = strconv.ParseBool(v)
		case "watchdog":
			o.Watchdog, err = strconv.ParseBool(v)
		default:
			return o, fmt.Errorf("unknown option %q", k)
		}
		if err != nil {
			return o, fmt.Errorf("option %s: %w", k, err)
		}
	}
	if o.Members < 2 || o.TTL <= 0 || o.LoopWait <= 0 || o.RetryTimeout <= 0 {
		return o, fmt.Errorf("options need members (2 or more), ttl, loop_wait and retry_timeout")
	}
	return o, nil
}

func parseInjection(f []string) (Injection, error) {
	var in Injection
	if len(f) < 2 {
		return in, fmt.Errorf("want: at <time> <fault> [member] [member] [latency <d>] [for <d>]")
	}
	var err error
	if in.At, err = time.ParseDuration(f[0]); err != nil {
		return in, err
	}
	in.Fault = f[1]
	if _, ok := faultNamed(in.Fault); !ok && in.Fault != "heal" {
		return in, fmt.Errorf("unknown fault %q", in.Fault)
	}
	var names []string
	for i := 2; i < len(f); i++ {
		switch f[i] {
		case "for", "latency":
			if i+1 == len(f) {
				return in, fmt.Errorf("%s needs a duration", f[i])
			}
			d, err := time.ParseDuration(f[i+1])
			if err != nil {
				return in, err
			}
			if f[i] == "for" {
				in.For = d
			} else {
				in.Latency = d
			}
			i++
		default:
			names = append(names, f[i])
		}
	}
	if len(names) > 2 {
		return in, fmt.Errorf("at most two members, got %v", names)
	}
	if len(names) > 0 {
		in.Node = names[0]
	}
	if len(names) > 1 {
		in.Other = names[1]
	}
	return in, nil
}

// failureKind is what broke, without the names and times.
func failureKind(err error) string {
	if err == nil {
		return ""
	}
	for _, k := range []string{"accept writes at once", "without the acknowledged commit", "no convergence", "breaks a safety invariant"} {
		if strings.Contains(err.Error(), k) {
			return k
		}
	}
	return "other"
}

// Replay runs o with a schedule; it returns the world after the run.
func Replay(o Options, schedule []Injection) *World {
	o.Schedule, o.Steps = schedule, 1<<40
	w := New(o)
	w.err = w.run()
	return w
}

// Shrink looks for a smaller schedule whose run fails the way the run of
// schedule does: it drops one injection at a time while the failure
// stays, for at most rounds passes. It returns the schedule it ended with
// and the world of its run (nil when replaying schedule does not fail).
func Shrink(o Options, schedule []Injection, rounds int) ([]Injection, *World) {
	w := Replay(o, schedule)
	kind := failureKind(w.err)
	if kind == "" {
		return schedule, nil
	}
	for range rounds {
		shrunk := false
		for i := len(schedule) - 1; i >= 0; i-- {
			try := append(append([]Injection(nil), schedule[:i]...), schedule[i+1:]...)
			if len(try) == 0 {
				continue
			}
			if tw := Replay(o, try); failureKind(tw.err) == kind {
				schedule, w, shrunk = try, tw, true
			}
		}
		if !shrunk {
			break
		}
	}
	return schedule, w
}

// Injected is the schedule the run applied (injections that did not apply
// left out).
func (w *World) Injected() []Injection { return w.injected }

// Err is the broken invariant, with the trace that led there.
func (w *World) Err() error { return w.report(w.err) }
