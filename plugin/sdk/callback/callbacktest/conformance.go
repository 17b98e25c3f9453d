package callbacktest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/custos-ha/custos/plugin/sdk"
	"github.com/custos-ha/custos/plugin/sdk/callback"
)

// Setup is one receiver under test and what the kit needs to drive and
// observe it. Each check asks for a new one.
type Setup struct {
	// Receiver is the receiver under test: the implementation itself, a
	// client of it over gRPC, or a plugin binary's (LaunchBinary).
	Receiver callback.Receiver
	// Config is a valid section, a JSON table, under which Deliver acts on
	// the event, where Observed sees it, and returns nil.
	Config []byte
	// BlockConfig is a valid section under which Deliver blocks until its
	// ctx ends (an HTTP endpoint that never answers, a script that
	// sleeps).
	BlockConfig []byte
	// FailConfig is a valid section under which Deliver fails (an HTTP
	// endpoint answering 500, a script exiting 1).
	FailConfig []byte
	// Observed returns the events acted on under Config so far, oldest
	// first; it is called right after Deliver returns, without waiting.
	// Fields listed in Hidden are not compared.
	Observed func(t *testing.T) []callback.Event
	// Hidden lists the event fields Observed cannot see (an exec script's
	// arguments carry neither Seq nor Time, say). Action is always
	// compared.
	Hidden Field
}

// Field names fields of callback.Event, for Setup.Hidden; combine them
// with |.
type Field uint

// Event fields but Action.
const (
	FieldRole Field = 1 << iota
	FieldScope
	FieldMember
	FieldSeq
	FieldTime
)

// Timing bounds of the kit.
const (
	// callTimeout bounds a call that should succeed: a local HTTP
	// request or a script run, with a process start on a busy machine.
	callTimeout = 10 * time.Second
	// blockProbe is how long a Deliver under BlockConfig must go on before
	// the kit ends its context: long enough to have reached whatever
	// blocks (a request sent, a script started) on a busy machine.
	blockProbe = 500 * time.Millisecond
	// cancelLatency bounds the return of a Deliver once its ctx ended:
	// a request abandoned, or a script's processes killed.
	cancelLatency = 5 * time.Second
)

// UnknownKey is the key the kit adds to Config to check that a section
// with a key the receiver does not know is refused, naming it.
const UnknownKey = "custos_conformance_unknown_key"

// RunConformance runs the whole kit; newReceiver returns a new receiver,
// with what goes with it, for each check. Checks run in parallel.
func RunConformance(t *testing.T, newReceiver func(t *testing.T) Setup) {
	k := &kit{newReceiver: newReceiver}
	t.Run("Validate", k.testValidate)
	t.Run("DeliverInOrder", k.testDeliverInOrder)
	t.Run("Redelivery", k.testRedelivery)
	t.Run("Cancel", k.testCancel)
	t.Run("Deadline", k.testDeadline)
	t.Run("EndedContext", k.testEndedContext)
	t.Run("Failure", k.testFailure)
	t.Run("RefusedSection", k.testRefusedSection)
}

type kit struct {
	newReceiver func(t *testing.T) Setup
}

// setup returns a receiver for a check, refusing an incomplete Setup.
func (k *kit) setup(t *testing.T) Setup {
	t.Helper()
	s := k.newReceiver(t)
	if s.Receiver == nil || s.Config == nil || s.BlockConfig == nil || s.FailConfig == nil || s.Observed == nil {
		t.Fatal("callbacktest: Setup.Receiver, Config, BlockConfig, FailConfig and Observed are required")
	}
	return s
}

// Events returns n events numbered from seq, cycling through the actions
// and roles, each a second and a half and a few nanoseconds after the
// last, in a zone other than UTC.
func Events(seq uint64, n int) []callback.Event {
	steps := []struct{ action, role string }{
		{callback.ActionStart, callback.RoleReplica},
		{callback.ActionRoleChange, callback.RolePrimary},
		{callback.ActionReload, callback.RolePrimary},
		{callback.ActionRestart, callback.RolePrimary},
		{callback.ActionRoleChange, callback.RoleDemoted},
		{callback.ActionRoleChange, callback.RoleStandbyLeader},
		{callback.ActionStop, callback.RoleStandbyLeader},
		{callback.ActionStart, callback.RoleUninitialized},
	}
	base := time.Date(2025, 3, 14, 15, 9, 26, 535897932, time.FixedZone("UTC+2", 2*3600))
	out := make([]callback.Event, n)
	for i := range out {
		s := steps[(int(seq)+i)%len(steps)]
		out[i] = callback.Event{
			Action: s.action,
			Role:   s.role,
			Scope:  "conformance",
			Member: fmt.Sprintf("member-%d", 1+i%3),
			Seq:    seq + uint64(i),
			Time:   base.Add(time.Duration(i)*1500*time.Millisecond + time.Duration(i*7)),
		}
	}
	return out
}

func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// withUnknownKey returns config, a JSON table, with UnknownKey added.
func withUnknownKey(t *testing.T, config []byte) []byte {
	t.Helper()
	table := map[string]json.RawMessage{}
	if err := json.Unmarshal(config, &table); err != nil || table == nil {
		t.Fatalf("callbacktest: Setup.Config must be a JSON table: %s", config)
	}
	table[UnknownKey] = json.RawMessage(`"x"`)
	out, err := json.Marshal(table)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// requireProblemAt checks that err is a *sdk.ConfigError with a problem
// at path ("" matches any).
func requireProblemAt(t *testing.T, what string, err error, path string) {
	t.Helper()
	var cfgErr *sdk.ConfigError
	if !errors.As(err, &cfgErr) {
		t.Fatalf("%s = %T %v, want a *sdk.ConfigError", what, err, err)
	}
	for _, p := range cfgErr.Problems {
		if path == "" || p.Path == path {
			return
		}
	}
	t.Fatalf("%s: no problem at key path %q in %v", what, path, cfgErr)
}

// mask zeroes the fields the setup cannot observe.
func mask(ev callback.Event, hidden Field) callback.Event {
	if hidden&FieldRole != 0 {
		ev.Role = ""
	}
	if hidden&FieldScope != 0 {
		ev.Scope = ""
	}
	if hidden&FieldMember != 0 {
		ev.Member = ""
	}
	if hidden&FieldSeq != 0 {
		ev.Seq = 0
	}
	if hidden&FieldTime != 0 {
		ev.Time = time.Time{}
	}
	return ev
}

// sameEvent compares events, their times as instants.
func sameEvent(a, b callback.Event) bool {
	if !a.Time.Equal(b.Time) {
		return false
	}
	a.Time, b.Time = time.Time{}, time.Time{}
	return a == b
}

// requireObserved checks that exactly want was observed, in order.
func requireObserved(t *testing.T, s Setup, want []callback.Event) {
	t.Helper()
	got := s.Observed(t)
	ok := len(got) == len(want)
	for i := 0; ok && i < len(want); i++ {
		ok = sameEvent(mask(got[i], s.Hidden), mask(want[i], s.Hidden))
	}
	if !ok {
		t.Fatalf("observed %d events:\n%s\nwant %d:\n%s", len(got), describe(got), len(want), describe(want))
	}
}

func describe(evs []callback.Event) string {
	out := ""
	for _, ev := range evs {
		out += fmt.Sprintf("  seq=%d action=%s role=%s scope=%s member=%s time=%s\n",
			ev.Seq, ev.Action, ev.Role, ev.Scope, ev.Member, ev.Time.UTC().Format(time.RFC3339Nano))
	}
	return out
}

// deliver delivers ev under config and requires nil.
func deliver(t *testing.T, s Setup, config []byte, ev callback.Event) {
	t.Helper()
	if err := s.Receiver.Deliver(ctxFor(t, callTimeout), config, ev); err != nil {
		t.Fatalf("Deliver(seq %d, %s) = %v, want nil", ev.Seq, ev.Action, err)
	}
}

func (k *kit) testValidate(t *testing.T) {
	t.Parallel()
	s := k.setup(t)
	ctx := ctxFor(t, callTimeout)
	for name, cfg := range map[string][]byte{"Config": s.Config, "BlockConfig": s.BlockConfig, "FailConfig": s.FailConfig} {
		if err := s.Receiver.Validate(ctx, cfg); err != nil {
			t.Errorf("Validate(%s %s) = %v, want nil", name, cfg, err)
		}
	}
	requireProblemAt(t, "Validate of Config with an unknown key", s.Receiver.Validate(ctx, withUnknownKey(t, s.Config)), UnknownKey)
	requireProblemAt(t, "Validate of malformed JSON", s.Receiver.Validate(ctx, []byte(`{not json`)), "")
	requireProblemAt(t, "Validate of a list", s.Receiver.Validate(ctx, []byte(`["x"]`)), "")
}

func (k *kit) testDeliverInOrder(t *testing.T) {
	t.Parallel()
	s := k.setup(t)
	evs := Events(1, 8)
	for i, ev := range evs {
		deliver(t, s, s.Config, ev)
		requireObserved(t, s, evs[:i+1])
	}
}

// testRedelivery: an event handled and delivered again, as the host does
// after a lost answer, is not acted on again and the next one is.
func (k *kit) testRedelivery(t *testing.T) {
	t.Parallel()
	s := k.setup(t)
	evs := Events(41, 3)
	deliver(t, s, s.Config, evs[0])
	deliver(t, s, s.Config, evs[1])
	deliver(t, s, s.Config, evs[1])
	requireObserved(t, s, evs[:2])
	deliver(t, s, s.Config, evs[2])
	requireObserved(t, s, evs)
}

// blockThenEnd delivers ev under BlockConfig, checks that the call is
// still going after blockProbe, ends it with end (which returns the
// context's expected error) and checks that it returns promptly with it.
func blockThenEnd(t *testing.T, s Setup, ctx context.Context, end func() error, ev callback.Event) {
	t.Helper()
	result := make(chan error, 1)
	go func() { result <- s.Receiver.Deliver(ctx, s.BlockConfig, ev) }()
	select {
	case err := <-result:
		t.Fatalf("Deliver under BlockConfig returned %v before its ctx ended; BlockConfig must block", err)
	case <-time.After(blockProbe):
	}
	want := end()
	ended := time.Now()
	select {
	case err := <-result:
		if !errors.Is(err, want) {
			t.Errorf("Deliver whose ctx ended = %v, want an error matching %v", err, want)
		}
	case <-time.After(cancelLatency):
		t.Fatalf("Deliver did not return within %v of its ctx ending", cancelLatency)
	}
	if took := time.Since(ended); took > cancelLatency {
		t.Errorf("Deliver took %v to return once its ctx ended", took)
	}
}

// testCancel: a cancelled Deliver returns promptly with context.Canceled,
// and the event, not handled, is acted on when delivered again.
func (k *kit) testCancel(t *testing.T) {
	t.Parallel()
	s := k.setup(t)
	ev := Events(3, 1)[0]
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	blockThenEnd(t, s, ctx, func() error { cancel(); return context.Canceled }, ev)
	requireObserved(t, s, nil)
	deliver(t, s, s.Config, ev)
	requireObserved(t, s, []callback.Event{ev})
}

// testDeadline: a Deliver whose deadline passes returns promptly with
// context.DeadlineExceeded.
func (k *kit) testDeadline(t *testing.T) {
	t.Parallel()
	s := k.setup(t)
	ev := Events(5, 1)[0]
	deadline := time.Now().Add(blockProbe + blockProbe/2)
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	blockThenEnd(t, s, ctx, func() error {
		time.Sleep(time.Until(deadline)) // the deadline is what ends the call
		return context.DeadlineExceeded
	}, ev)
	requireObserved(t, s, nil)
	deliver(t, s, s.Config, ev)
	requireObserved(t, s, []callback.Event{ev})
}

// testEndedContext: with a context already ended, Deliver acts on nothing.
func (k *kit) testEndedContext(t *testing.T) {
	t.Parallel()
	s := k.setup(t)
	evs := Events(9, 2)
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Receiver.Deliver(cancelled, s.Config, evs[0]); !errors.Is(err, context.Canceled) {
		t.Errorf("Deliver with a cancelled ctx = %v, want an error matching context.Canceled", err)
	}
	expired, cancel2 := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel2()
	if err := s.Receiver.Deliver(expired, s.Config, evs[1]); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Deliver with an expired ctx = %v, want an error matching context.DeadlineExceeded", err)
	}
	requireObserved(t, s, nil)
	deliver(t, s, s.Config, evs[0])
	deliver(t, s, s.Config, evs[1])
	requireObserved(t, s, evs)
}

// testFailure: a failed Deliver is an error of its own kind, and the
// event, not handled, is acted on when delivered again.
func (k *kit) testFailure(t *testing.T) {
	t.Parallel()
	s := k.setup(t)
	ev := Events(17, 1)[0]
	err := s.Receiver.Deliver(ctxFor(t, callTimeout), s.FailConfig, ev)
	var cfgErr *sdk.ConfigError
	switch {
	case err == nil:
		t.Fatal("Deliver under FailConfig = nil, want an error")
	case errors.As(err, &cfgErr), errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded), errors.Is(err, callback.ErrInvalidEvent):
		t.Errorf("Deliver under FailConfig = %v, want a failure, not a contract error", err)
	}
	requireObserved(t, s, nil)
	deliver(t, s, s.Config, ev)
	requireObserved(t, s, []callback.Event{ev})
}

// testRefusedSection: Deliver refuses a section Validate refuses, and acts
// on nothing.
func (k *kit) testRefusedSection(t *testing.T) {
	t.Parallel()
	s := k.setup(t)
	ev := Events(23, 1)[0]
	err := s.Receiver.Deliver(ctxFor(t, callTimeout), withUnknownKey(t, s.Config), ev)
	requireProblemAt(t, "Deliver under a section with an unknown key", err, UnknownKey)
	requireObserved(t, s, nil)
	deliver(t, s, s.Config, ev)
	requireObserved(t, s, []callback.Event{ev})
}
