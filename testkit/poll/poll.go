// Package poll waits for conditions that become true eventually: a server
// that starts, a leader that is elected, a key that expires. Tests never
// hang their verdict on how fast the machine is; they poll with a deadline
// and report what they waited for and the condition's last answer.
package poll

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

const (
	// firstInterval is the first pause between two tries: short, so that a
	// condition that is nearly true costs little waiting.
	firstInterval = 10 * time.Millisecond
	// maxInterval caps the pause, which doubles after each try: a
	// condition that takes seconds (a lease that expires, a server that
	// starts) is tried a few times a second without loading the machine.
	maxInterval = 250 * time.Millisecond
)

// Until calls cond until it returns nil, then returns nil. When ctx ends
// first it returns an error naming ctx's cause (context.Cause) and cond's
// last error.
func Until(ctx context.Context, cond func(context.Context) error) error {
	interval := firstInterval
	for {
		last := cond(ctx)
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w; last: %v", context.Cause(ctx), last)
		case <-time.After(interval):
		}
		interval = min(2*interval, maxInterval)
	}
}

// Condition is what Eventually waits for: a func() error is true when it
// returns nil (and its error says why not), a func() bool when it returns
// true.
type Condition interface {
	func() error | func() bool
}

// errNotYet is a false boolean condition's last answer.
var errNotYet = errors.New("not yet")

// Eventually fails the test (t.Fatalf) unless cond becomes true within
// timeout; the message names what it waited for and cond's last answer.
func Eventually[C Condition](t testing.TB, timeout time.Duration, what string, cond C) {
	t.Helper()
	var check func() error
	switch c := any(cond).(type) {
	case func() error:
		check = c
	case func() bool:
		check = func() error {
			if c() {
				return nil
			}
			return errNotYet
		}
	}
	ctx, cancel := context.WithTimeoutCause(context.Background(), timeout, fmt.Errorf("waited %v", timeout))
	defer cancel()
	if err := Until(ctx, func(context.Context) error { return check() }); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}
