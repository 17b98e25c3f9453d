package callbacktest

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/custos-ha/custos/plugin/sdk/callback"
	"github.com/custos-ha/custos/plugin/sdk/section"
)

// Memory is the in-memory reference Receiver: it records the events it
// handles, and can be told to fail or to block, through its section or its
// methods. It is what the contract means, written as plainly as possible;
// it passes RunConformance and serves unit tests of the host. It is safe
// for concurrent use.
//
// Its section takes two keys, both optional:
//
//	fail = "message"  # Deliver fails with this message and handles nothing
//	block = true      # Deliver blocks until its ctx ends
type Memory struct {
	mu      sync.Mutex
	calls   []callback.Event
	events  []callback.Event
	handled uint64 // highest Seq handled
	fail    error
	hold    chan struct{} // non-nil: Deliver waits for it to close
}

var _ callback.Receiver = (*Memory)(nil)

// NewMemory returns a Memory that has handled nothing.
func NewMemory() *Memory { return &Memory{} }

// memoryConfig is Memory's section.
type memoryConfig struct {
	fail  string
	block bool
}

func parseMemoryConfig(data []byte) (memoryConfig, error) {
	var c memoryConfig
	d, err := section.New(data)
	if err != nil {
		return c, err
	}
	d.String("fail", &c.fail)
	d.Bool("block", &c.block)
	return c, d.Err()
}

// Validate implements callback.Receiver.
func (m *Memory) Validate(_ context.Context, config []byte) error {
	_, err := parseMemoryConfig(config)
	return err
}

// Deliver implements callback.Receiver. In order: a refused section or an
// ended ctx returns its error; the call is recorded (Calls); a Seq already
// handled returns nil; a failure set by the section or FailWith is
// returned; a block set by the section, or a Hold not yet released, waits
// (until ctx ends: an error matching ctx.Err()); then the event is handled
// (Events).
func (m *Memory) Deliver(ctx context.Context, config []byte, ev callback.Event) error {
	cfg, err := parseMemoryConfig(config)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("event %d not handled: %w", ev.Seq, err)
	}
	m.mu.Lock()
	m.calls = append(m.calls, ev)
	if ev.Seq <= m.handled {
		m.mu.Unlock()
		return nil
	}
	fail, hold := m.fail, m.hold
	m.mu.Unlock()

	switch {
	case cfg.fail != "":
		return errors.New(cfg.fail)
	case fail != nil:
		return fail
	}
	if cfg.block {
		<-ctx.Done()
		return fmt.Errorf("event %d not handled: %w", ev.Seq, ctx.Err())
	}
	if hold != nil {
		select {
		case <-hold:
		case <-ctx.Done():
			return fmt.Errorf("event %d not handled: %w", ev.Seq, ctx.Err())
		}
	}

	m.mu.Lock()
	defer m.mu.Unlock()
	m.events = append(m.events, ev)
	m.handled = ev.Seq
	return nil
}

// Events returns the events handled (Deliver returned nil for them, a
// redelivery not counted again), oldest first.
func (m *Memory) Events() []callback.Event {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]callback.Event(nil), m.events...)
}

// Calls returns the event of every Deliver that got past its section and
// ctx checks, oldest first: redeliveries, failures and blocked calls
// included. A test polls it to see that a delivery has begun.
func (m *Memory) Calls() []callback.Event {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]callback.Event(nil), m.calls...)
}

// FailWith makes every later Deliver of a new Seq return err, until it is
// called again with nil.
func (m *Memory) FailWith(err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.fail = err
}

// Hold makes every later Deliver of a new Seq wait until release is
// called (then handle its event) or its ctx ends. release may be called
// more than once.
func (m *Memory) Hold() (release func()) {
	ch := make(chan struct{})
	m.mu.Lock()
	m.hold = ch
	m.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			m.mu.Lock()
			if m.hold == ch {
				m.hold = nil
			}
			m.mu.Unlock()
			close(ch)
		})
	}
}
