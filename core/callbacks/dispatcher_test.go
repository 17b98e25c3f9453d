package callbacks

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/custos-ha/custos/core/controller"
	"github.com/custos-ha/custos/plugin/sdk/callback"
)

// The agent's controller takes these.
var (
	_ controller.Events = (*Dispatcher)(nil)
	_ controller.Hooks  = (*HookRunner)(nil)
)

// fakeReceiver records every delivery attempt and answers with deliver
// (nil: success at once).
type fakeReceiver struct {
	deliver func(ctx context.Context, ev callback.Event, attempt int) error

	mu       sync.Mutex
	attempts []callback.Event
	configs  []string
}

func (f *fakeReceiver) Validate(context.Context, []byte) error { return nil }

func (f *fakeReceiver) Deliver(ctx context.Context, config []byte, ev callback.Event) error {
	f.mu.Lock()
	f.attempts = append(f.attempts, ev)
	f.configs = append(f.configs, string(config))
	n := 0
	for _, a := range f.attempts {
		if a.Seq == ev.Seq {
			n++
		}
	}
	f.mu.Unlock()
	if f.deliver == nil {
		return nil
	}
	return f.deliver(ctx, ev, n)
}

// seqs returns the Seq of every attempt, in order.
func (f *fakeReceiver) seqs() []uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]uint64, len(f.attempts))
	for i, a := range f.attempts {
		out[i] = a.Seq
	}
	return out
}

// syncBuffer is a log output written from the sinks' goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// tickClock returns 2030-01-01 00:00:00 UTC plus one second per call.
func tickClock() func() time.Time {
	var mu sync.Mutex
	t := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	return func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		t = t.Add(time.Second)
		return t
	}
}

func newTestDispatcher(t *testing.T, logs *syncBuffer, sinks ...Sink) *Dispatcher {
	t.Helper()
	opts := Options{Scope: "demo", Member: "node1", Now: tickClock()}
	if logs != nil {
		opts.Logger = hclog.New(&hclog.LoggerOptions{Output: logs, Level: hclog.Debug})
	}
	d, err := NewDispatcher(opts, sinks...)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func seqRange(from, to uint64) []uint64 {
	var out []uint64
	for s := from; s <= to; s++ {
		out = append(out, s)
	}
	return out
}

func equalSeqs(a, b []uint64) bool {
	return fmt.Sprint(a) == fmt.Sprint(b)
}

func TestDispatcherDeliversEveryEventInOrderToEverySink(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a, b := &fakeReceiver{}, &fakeReceiver{}
		d := newTestDispatcher(t, nil,
			Sink{Name: "a", Receiver: a, Config: []byte(`{"url":"x"}`), Timeout: time.Second},
			Sink{Name: "b", Receiver: b, Timeout: time.Second})
		roles := []string{callback.RoleReplica, callback.RolePrimary}
		for i := range 50 {
			d.Emit(callback.ActionRoleChange, roles[i%2])
			if seq := d.Seq(); seq != uint64(i+1) {
				t.Fatalf("Seq() after Emit #%d is %d", i+1, seq)
			}
		}
		if err := d.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
		for name, r := range map[string]*fakeReceiver{"a": a, "b": b} {
			if got := r.seqs(); !equalSeqs(got, seqRange(1, 50)) {
				t.Fatalf("sink %s got seqs %v", name, got)
			}
			for i, ev := range r.attempts {
				// Stamped once, at Emit: both sinks see the same event.
				want := callback.Event{
					Action: callback.ActionRoleChange, Role: roles[i%2], Scope: "demo", Member: "node1",
					Seq: uint64(i + 1), Time: a.attempts[i].Time,
				}
				if ev != want {
					t.Fatalf("sink %s event %d = %+v, want %+v", name, i, ev, want)
				}
				if i > 0 && !ev.Time.After(r.attempts[i-1].Time) {
					t.Fatalf("sink %s event %d time %v is not after the one before (%v)", name, i, ev.Time, r.attempts[i-1].Time)
				}
			}
		}
		if a.attempts[0].Time.Year() != 2030 {
			t.Errorf("event time %v does not come from the injected clock", a.attempts[0].Time)
		}
		if a.configs[0] != `{"url":"x"}` || b.configs[0] != "" {
			t.Errorf("configs handed over: a %q, b %q", a.configs[0], b.configs[0])
		}
		for _, st := range d.Status() {
			if st.Delivered != 50 || st.Failed != 0 || st.Queued != 0 || st.Delivering != nil {
				t.Errorf("status %+v", st)
			}
			if st.LastDelivered == nil || st.LastDelivered.Event.Seq != 50 || st.LastDelivered.Error != "" {
				t.Errorf("%s last delivered %+v", st.Name, st.LastDelivered)
			}
		}
	})
}

// A sink whose receiver hangs (deaf to its deadline) makes neither Emit
// nor the other sinks wait, and loses nothing: once it answers, it gets
// every event.
func TestStuckSinkBlocksNeitherEmitNorOtherSinks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		stuck := &fakeReceiver{deliver: func(_ context.Context, ev callback.Event, _ int) error {
			if ev.Seq == 1 {
				<-release
			}
			return nil
		}}
		fine := &fakeReceiver{}
		logs := &syncBuffer{}
		d := newTestDispatcher(t, logs,
			Sink{Name: "stuck", Receiver: stuck, Timeout: time.Second},
			Sink{Name: "fine", Receiver: fine, Timeout: time.Second})

		const n = 1000
		start := time.Now()
		for range n {
			d.Emit(callback.ActionReload, callback.RoleReplica)
		}
		if took := time.Since(start); took != 0 {
			t.Errorf("Emit took %v of the bubble's time", took)
		}
		synctest.Wait()
		if got := fine.seqs(); !equalSeqs(got, seqRange(1, n)) {
			t.Fatalf("the other sink got %d events", len(got))
		}
		st := d.Status()
		if st[0].Queued != n-1 || st[0].Delivering == nil || st[0].Delivering.Seq != 1 || st[0].Delivered != 0 {
			t.Errorf("stuck sink status: queued %d, delivering %+v, delivered %d", st[0].Queued, st[0].Delivering, st[0].Delivered)
		}
		if st[1].Delivered != n {
			t.Errorf("other sink delivered %d", st[1].Delivered)
		}
		if !strings.Contains(logs.String(), "callback receiver falls behind") {
			t.Errorf("no warning about the growing queue:\n%s", logs)
		}

		close(release)
		if err := d.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
		if got := stuck.seqs(); !equalSeqs(got, seqRange(1, n)) {
			t.Fatalf("the stuck sink got %d events after it recovered", len(got))
		}
	})
}

func TestDeliveryTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		slow := &fakeReceiver{deliver: func(ctx context.Context, ev callback.Event, _ int) error {
			if ev.Seq == 1 {
				<-ctx.Done() // honours its deadline, as the contract asks
				return fmt.Errorf("script stopped: %w", ctx.Err())
			}
			return nil
		}}
		logs := &syncBuffer{}
		d := newTestDispatcher(t, logs, Sink{Name: "slow", Receiver: slow, Timeout: 5 * time.Second})
		start := time.Now()
		d.Emit(callback.ActionStart, callback.RoleReplica)
		d.Emit(callback.ActionRoleChange, callback.RolePrimary)
		if err := d.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
		if took := time.Since(start); took != 5*time.Second {
			t.Errorf("delivering took %v, want the 5s timeout", took)
		}
		st := d.Status()[0]
		if st.Failed != 1 || st.Delivered != 1 || st.Redeliveries != 0 {
			t.Fatalf("status %+v", st)
		}
		if f := st.LastFailed; f == nil || f.Event.Seq != 1 || f.Duration != 5*time.Second || !strings.Contains(f.Error, "deadline exceeded") {
			t.Errorf("last failed %+v", st.LastFailed)
		}
		if got := slow.seqs(); !equalSeqs(got, []uint64{1, 2}) {
			t.Errorf("attempts %v: a timed-out event is not delivered again", got)
		}
		if !strings.Contains(logs.String(), "callback failed: callback=slow action=on_start role=replica seq=1 attempt=1 duration=5s") {
			t.Errorf("the failure is not logged with its details:\n%s", logs)
		}
	})
}

// A receiver that went away (its plugin died) gets the same event again,
// same Seq, until it answers; the events after it wait their turn.
func TestRedeliveryAfterTheReceiverWentAway(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := &fakeReceiver{deliver: func(_ context.Context, ev callback.Event, attempt int) error {
			if ev.Seq == 2 && attempt <= 3 {
				return fmt.Errorf("callback plugin x went away: rpc error: code = Unavailable: %w", ErrReceiverGone)
			}
			return nil
		}}
		logs := &syncBuffer{}
		d := newTestDispatcher(t, logs, Sink{Name: "x", Receiver: r, Timeout: time.Second})
		start := time.Now()
		for range 3 {
			d.Emit(callback.ActionStop, callback.RoleReplica)
		}
		if err := d.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
		if got := r.seqs(); !equalSeqs(got, []uint64{1, 2, 2, 2, 2, 3}) {
			t.Fatalf("attempts %v", got)
		}
		for _, a := range r.attempts[1:5] {
			if a != r.attempts[1] {
				t.Fatalf("a redelivered event differs: %+v vs %+v", a, r.attempts[1])
			}
		}
		// Backoff 100 ms, 200 ms, 400 ms.
		if took := time.Since(start); took != 700*time.Millisecond {
			t.Errorf("redelivering took %v, want 700ms of backoff", took)
		}
		st := d.Status()[0]
		if st.Delivered != 3 || st.Failed != 0 || st.Redeliveries != 3 {
			t.Errorf("status %+v", st)
		}
		if n := strings.Count(logs.String(), "callback receiver went away; delivering the event again"); n != 3 {
			t.Errorf("%d redelivery lines, want 3:\n%s", n, logs)
		}
	})
}

func TestAReceiverErrorIsNotRetried(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := &fakeReceiver{deliver: func(_ context.Context, ev callback.Event, _ int) error {
			if ev.Seq == 1 {
				return errors.New("webhook answered 500")
			}
			return nil
		}}
		d := newTestDispatcher(t, nil, Sink{Name: "hook", Receiver: r, Timeout: time.Second})
		d.Emit(callback.ActionStart, callback.RoleReplica)
		d.Emit(callback.ActionStop, callback.RoleReplica)
		if err := d.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
		if got := r.seqs(); !equalSeqs(got, []uint64{1, 2}) {
			t.Fatalf("attempts %v", got)
		}
		st := d.Status()[0]
		if st.Failed != 1 || st.Delivered != 1 || st.LastFailed.Error != "webhook answered 500" || st.LastFailed.Event.Action != callback.ActionStart {
			t.Errorf("status %+v, last failed %+v", st, st.LastFailed)
		}
	})
}

func TestCloseDeliversWhatIsQueued(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := &fakeReceiver{deliver: func(ctx context.Context, _ callback.Event, _ int) error {
			select {
			case <-time.After(time.Second):
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		}}
		d := newTestDispatcher(t, nil, Sink{Name: "slow", Receiver: r, Timeout: 10 * time.Second})
		for range 5 {
			d.Emit(callback.ActionStop, callback.RoleReplica)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		start := time.Now()
		if err := d.Close(ctx); err != nil {
			t.Fatal(err)
		}
		if took := time.Since(start); took != 5*time.Second {
			t.Errorf("Close took %v, want the 5 deliveries' 5s", took)
		}
		if got := r.seqs(); !equalSeqs(got, seqRange(1, 5)) {
			t.Fatalf("delivered %v", got)
		}
		d.Emit(callback.ActionStart, callback.RoleReplica)
		if seq := d.Seq(); seq != 5 {
			t.Errorf("Emit after Close took seq %d", seq)
		}
		if err := d.Close(context.Background()); err != nil {
			t.Errorf("second Close: %v", err)
		}
	})
}

func TestCloseGivesUpWhenItsContextEnds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := &fakeReceiver{deliver: func(ctx context.Context, _ callback.Event, _ int) error {
			<-ctx.Done()
			return ctx.Err()
		}}
		gone := &fakeReceiver{deliver: func(context.Context, callback.Event, int) error {
			return ErrReceiverGone
		}}
		logs := &syncBuffer{}
		d := newTestDispatcher(t, logs,
			Sink{Name: "hung", Receiver: r, Timeout: time.Hour},
			Sink{Name: "down", Receiver: gone, Timeout: time.Hour})
		for range 4 {
			d.Emit(callback.ActionStop, callback.RoleReplica)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		start := time.Now()
		err := d.Close(ctx)
		if took := time.Since(start); took != 3*time.Second {
			t.Errorf("Close took %v, want its context's 3s", took)
		}
		// Each sink: event 1 failed in flight, 2..4 dropped.
		if err == nil || !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "6 events not delivered") {
			t.Fatalf("Close: %v", err)
		}
		for _, st := range d.Status() {
			if st.Failed != 1 || st.Queued != 0 || st.Delivering != nil {
				t.Errorf("status %+v", st)
			}
		}
		if !strings.Contains(logs.String(), "callback events not delivered: the agent stopped before their turn: callback=hung count=3 first_seq=2 last_seq=4") {
			t.Errorf("dropped events not logged:\n%s", logs)
		}
	})
}

func TestNewDispatcherRefusesBadSinks(t *testing.T) {
	r := &fakeReceiver{}
	for _, tc := range []struct {
		name  string
		sinks []Sink
		want  string
	}{
		{"no name", []Sink{{Receiver: r, Timeout: time.Second}}, "has no name"},
		{"twice", []Sink{{Name: "a", Receiver: r, Timeout: time.Second}, {Name: "a", Receiver: r, Timeout: time.Second}}, "configured twice"},
		{"no receiver", []Sink{{Name: "a", Timeout: time.Second}}, "has no receiver"},
		{"no timeout", []Sink{{Name: "a", Receiver: r}}, "must be positive"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewDispatcher(Options{}, tc.sinks...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err %v, want %q", err, tc.want)
			}
		})
	}
}

// Seq counts on without sinks too: it numbers the member's events for
// the agent's life.
func TestSeqWithoutSinks(t *testing.T) {
	d, err := NewDispatcher(Options{})
	if err != nil {
		t.Fatal(err)
	}
	d.Emit(callback.ActionStart, callback.RoleReplica)
	d.Emit(callback.ActionStop, callback.RoleReplica)
	if got := d.Seq(); got != 2 {
		t.Errorf("Seq() %d", got)
	}
	if err := d.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
}
