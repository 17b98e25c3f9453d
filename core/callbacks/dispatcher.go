package callbacks

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/custos-ha/custos/plugin/sdk/callback"
)

const (
	// queueWarnLength is the queue length at which a sink is logged as
	// falling behind, and again at every doubling. Events come a few per
	// minute at most (a role change, a restart); 64 waiting means the
	// receiver has been failing at its timeout, or hanging, for a while.
	queueWarnLength = 64
	// redeliverBackoffMin is the wait before delivering again an event
	// whose receiver went away: a supervised plugin is started again at
	// once when it had run fine, so a short wait suffices.
	redeliverBackoffMin = 100 * time.Millisecond
	// redeliverBackoffMax caps that wait, doubled after every further
	// attempt: a plugin that stays down is asked at most this often.
	redeliverBackoffMax = 5 * time.Second
)

// ErrReceiverGone marks a delivery that did not reach a live receiver: the
// plugin process died, or was down, before it answered. The Dispatcher
// delivers such an event again, with the same Seq, until it is delivered,
// fails otherwise, or the Dispatcher is closed. Receivers wrap it; any
// other error is the event's failure and is not retried.
var ErrReceiverGone = errors.New("callback receiver went away before answering")

// Sink is one receiver of the events and how to deliver to it.
type Sink struct {
	// Name identifies the sink in logs and in Status ("exec" for the
	// built-in scripts, the plugin name for a [callback.<name>] section).
	// Names are unique within a Dispatcher.
	Name string
	// Receiver gets the events.
	Receiver callback.Receiver
	// Config is handed to every Deliver (the plugin's section as JSON).
	Config []byte
	// Timeout bounds one delivery; it must be positive.
	Timeout time.Duration
}

// Options configure a Dispatcher.
type Options struct {
	// Scope and Member are stamped on every event.
	Scope, Member string
	// Logger receives one line per delivery outcome. Nil discards.
	Logger hclog.Logger
	// Now stamps event times and outcomes; nil is time.Now.
	Now func() time.Time
}

// Dispatcher stamps lifecycle events and delivers each to every sink, in
// order, without making its caller wait.
type Dispatcher struct {
	scope, member string
	logger        hclog.Logger
	now           func() time.Time

	// ctx bounds every delivery; cancel ends them when Close gives up.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.Mutex // orders Emit calls: every sink sees the same order
	seq    uint64
	closed bool
	sinks  []*sink
}

// sink is a Sink with its queue and state.
type sink struct {
	Sink
	d      *Dispatcher
	logger hclog.Logger
	wake   chan struct{} // capacity 1: something was queued or closing

	mu      sync.Mutex
	queue   []callback.Event
	closing bool
	warnAt  int
	status  Status
}

// Status is what a sink has done, for /patroni and the metrics.
type Status struct {
	Name string
	// Queued counts the events waiting, the one being delivered not
	// included.
	Queued int
	// Delivering is the event being delivered now, nil when idle.
	Delivering *callback.Event
	// Delivered and Failed count the events by outcome; Redeliveries
	// counts the attempts made again after the receiver went away.
	Delivered, Failed, Redeliveries uint64
	// LastDelivered and LastFailed are the latest outcome of each kind,
	// nil before the first.
	LastDelivered, LastFailed *Outcome
}

// Outcome is how the delivery of one event ended.
type Outcome struct {
	Event callback.Event
	// Finished is when the delivery ended; Duration is how long its last
	// attempt took.
	Finished time.Time
	Duration time.Duration
	// Error is the failure, "" for a delivered event.
	Error string
}

// NewDispatcher starts one delivery goroutine per sink. It fails on a sink
// without a name or receiver, with a duplicate name, or with a timeout
// that is not positive. Close ends the goroutines.
func NewDispatcher(opts Options, sinks ...Sink) (*Dispatcher, error) {
	seen := map[string]bool{}
	for i, s := range sinks {
		switch {
		case s.Name == "":
			return nil, fmt.Errorf("callback sink %d has no name", i)
		case seen[s.Name]:
			return nil, fmt.Errorf("callback sink %q is configured twice", s.Name)
		case s.Receiver == nil:
			return nil, fmt.Errorf("callback sink %q has no receiver", s.Name)
		case s.Timeout <= 0:
			return nil, fmt.Errorf("callback sink %q: timeout %v must be positive", s.Name, s.Timeout)
		}
		seen[s.Name] = true
	}
	logger := opts.Logger
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	ctx, cancel := context.WithCancel(context.Background())
	d := &Dispatcher{
		scope:  opts.Scope,
		member: opts.Member,
		logger: logger,
		now:    now,
		ctx:    ctx,
		cancel: cancel,
	}
	for _, s := range sinks {
		sk := &sink{
			Sink:   s,
			d:      d,
			logger: logger.With("callback", s.Name),
			wake:   make(chan struct{}, 1),
			warnAt: queueWarnLength,
			status: Status{Name: s.Name},
		}
		d.sinks = append(d.sinks, sk)
		d.wg.Add(1)
		go func() {
			defer d.wg.Done()
			sk.run(ctx)
		}()
	}
	return d, nil
}

// Emit stamps an event (the next Seq, the time, the scope and member) and
// queues it to every sink. It never waits for a delivery. After Close the
// event is logged and dropped, and takes no Seq.
func (d *Dispatcher) Emit(action, role string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		d.logger.Warn("callback event after the dispatcher was closed; not delivered", "action", action, "role", role)
		return
	}
	d.seq++
	ev := callback.Event{
		Action: action,
		Role:   role,
		Scope:  d.scope,
		Member: d.member,
		Seq:    d.seq,
		Time:   d.now(),
	}
	for _, s := range d.sinks {
		s.push(ev)
	}
}

// Seq returns the Seq of the last event emitted, 0 before the first.
func (d *Dispatcher) Seq() uint64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.seq
}

// Status returns the state of every sink, in the order they were given.
func (d *Dispatcher) Status() []Status {
	out := make([]Status, 0, len(d.sinks))
	for _, s := range d.sinks {
		out = append(out, s.snapshot())
	}
	return out
}

// Close stops accepting events and waits until every sink has delivered
// what it had queued, or ctx ends: then the deliveries in flight are
// cancelled, the events still queued are logged and dropped, and Close
// returns an error saying how many, once every delivery goroutine has
// returned. It may be called more than once.
func (d *Dispatcher) Close(ctx context.Context) error {
	d.mu.Lock()
	d.closed = true
	for _, s := range d.sinks {
		s.close()
	}
	d.mu.Unlock()

	done := make(chan struct{})
	go func() {
		d.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		d.cancel()
		return nil
	case <-ctx.Done():
	}
	d.cancel()
	<-done
	dropped := 0
	for _, s := range d.sinks {
		dropped += s.drop()
	}
	if dropped == 0 {
		return nil
	}
	return fmt.Errorf("closing callbacks: %d events not delivered: %w", dropped, ctx.Err())
}

// push queues an event; d.mu is held.
func (s *sink) push(ev callback.Event) {
	s.mu.Lock()
	s.queue = append(s.queue, ev)
	n := len(s.queue)
	warn := n >= s.warnAt
	if warn {
		s.warnAt *= 2
	}
	s.mu.Unlock()
	if warn {
		s.logger.Warn("callback receiver falls behind: events are waiting for it", "queued", n, "seq", ev.Seq)
	}
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// close has the sink return once its queue is empty.
func (s *sink) close() {
	s.mu.Lock()
	s.closing = true
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// drop empties the queue after the sink stopped, logging what is lost,
// and returns how many events were dropped.
func (s *sink) drop() int {
	s.mu.Lock()
	q := s.queue
	s.queue = nil
	s.mu.Unlock()
	if len(q) > 0 {
		s.logger.Warn("callback events not delivered: the agent stopped before their turn",
			"count", len(q), "first_seq", q[0].Seq, "last_seq", q[len(q)-1].Seq)
	}
	return len(q)
}

// run delivers the queued events one at a time until the sink is closed
// and empty, or ctx ends.
func (s *sink) run(ctx context.Context) {
	for {
		ev, ok := s.next(ctx)
		if !ok {
			return
		}
		s.deliver(ctx, ev)
	}
}

// next takes the first queued event, waiting for one.
func (s *sink) next(ctx context.Context) (callback.Event, bool) {
	for {
		if ctx.Err() != nil {
			return callback.Event{}, false
		}
		s.mu.Lock()
		if len(s.queue) > 0 {
			ev := s.queue[0]
			s.queue[0] = callback.Event{}
			s.queue = s.queue[1:]
			if len(s.queue) == 0 {
				s.queue = nil // let the backing array go
				s.warnAt = queueWarnLength
			}
			s.status.Delivering = &ev
			s.mu.Unlock()
			return ev, true
		}
		closing := s.closing
		s.mu.Unlock()
		if closing {
			return callback.Event{}, false
		}
		select {
		case <-s.wake:
		case <-ctx.Done():
		}
	}
}

// deliver hands one event to the receiver, again with the same Seq while
// the receiver went away, and records the outcome.
func (s *sink) deliver(ctx context.Context, ev callback.Event) {
	backoff := redeliverBackoffMin
	for attempt := 1; ; attempt++ {
		start := time.Now()
		dctx, cancel := context.WithTimeout(ctx, s.Timeout)
		err := s.Receiver.Deliver(dctx, s.Config, ev)
		cancel()
		took := time.Since(start)
		line := []any{"action", ev.Action, "role", ev.Role, "seq", ev.Seq, "attempt", attempt, "duration", took.Round(time.Millisecond).String()}
		switch {
		case err == nil:
			s.logger.Info("callback delivered", line...)
			s.record(ev, took, nil)
			return
		case ctx.Err() != nil:
			err = fmt.Errorf("the agent stopped during the delivery: %w", err)
		case errors.Is(err, ErrReceiverGone):
			s.logger.Warn("callback receiver went away; delivering the event again", append(line, "error", err, "backoff", backoff.String())...)
			s.mu.Lock()
			s.status.Redeliveries++
			s.mu.Unlock()
			t := time.NewTimer(backoff)
			select {
			case <-t.C:
				backoff = min(2*backoff, redeliverBackoffMax)
				continue
			case <-ctx.Done():
				t.Stop()
				err = fmt.Errorf("the agent stopped before the event could be delivered again: %w", err)
			}
		}
		s.logger.Warn("callback failed", append(line, "error", err)...)
		s.record(ev, took, err)
		return
	}
}

// record keeps the outcome of an event.
func (s *sink) record(ev callback.Event, took time.Duration, err error) {
	o := &Outcome{Event: ev, Finished: s.d.now(), Duration: took}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.status.Delivering = nil
	if err != nil {
		o.Error = err.Error()
		s.status.Failed++
		s.status.LastFailed = o
		return
	}
	s.status.Delivered++
	s.status.LastDelivered = o
}

// snapshot copies the sink's status.
func (s *sink) snapshot() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.status
	st.Queued = len(s.queue)
	if st.Delivering != nil {
		ev := *st.Delivering
		st.Delivering = &ev
	}
	if st.LastDelivered != nil {
		o := *st.LastDelivered
		st.LastDelivered = &o
	}
	if st.LastFailed != nil {
		o := *st.LastFailed
		st.LastFailed = &o
	}
	return st
}
