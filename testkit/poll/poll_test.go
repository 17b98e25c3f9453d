package poll

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestUntilReturnsOnceTrue(t *testing.T) {
	n := 0
	err := Until(context.Background(), func(context.Context) error {
		if n++; n < 3 {
			return errors.New("not yet")
		}
		return nil
	})
	if err != nil || n != 3 {
		t.Fatalf("Until: %v after %d tries, want nil after 3", err, n)
	}
}

func TestUntilReportsCauseAndLastError(t *testing.T) {
	ctx, cancel := context.WithCancelCause(context.Background())
	cause := errors.New("the server exited")
	n := 0
	err := Until(ctx, func(context.Context) error {
		if n++; n == 2 {
			cancel(cause)
		}
		return errors.New("connection refused")
	})
	if !errors.Is(err, cause) || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("Until: %v, want the cause and the last error", err)
	}
}

// recorder is a testing.TB whose Fatalf records the message and stops the
// goroutine, as the real one does.
type recorder struct {
	testing.TB
	msg string
}

func (r *recorder) Helper() {}

func (r *recorder) Fatalf(format string, args ...any) {
	r.msg = format
	for _, a := range args {
		if s, ok := a.(string); ok {
			r.msg += " " + s
		}
		if e, ok := a.(error); ok {
			r.msg += " " + e.Error()
		}
	}
	panic(r)
}

func fails(t *testing.T, f func(tb testing.TB)) string {
	t.Helper()
	r := &recorder{TB: t}
	func() {
		defer func() {
			if p := recover(); p != nil && p != r {
				panic(p)
			}
		}()
		f(r)
	}()
	return r.msg
}

func TestEventually(t *testing.T) {
	n := 0
	Eventually(t, 10*time.Second, "a counter at 3", func() bool { n++; return n >= 3 })
	Eventually(t, 10*time.Second, "no error", func() error { return nil })

	msg := fails(t, func(tb testing.TB) {
		Eventually(tb, 50*time.Millisecond, "the leader key", func() error { return errors.New("no key yet") })
	})
	for _, want := range []string{"the leader key", "waited 50ms", "no key yet"} {
		if !strings.Contains(msg, want) {
			t.Errorf("failure %q does not say %q", msg, want)
		}
	}
	if msg := fails(t, func(tb testing.TB) {
		Eventually(tb, 50*time.Millisecond, "a flag", func() bool { return false })
	}); !strings.Contains(msg, "a flag") {
		t.Errorf("failure %q does not name what it waited for", msg)
	}
}
