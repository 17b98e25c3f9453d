package etcd3

import (
	"context"
	"errors"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Timing of the attempts of one request.
const (
	// minAttempt is the shortest deadline one attempt gets: a healthy etcd
	// member answers within milliseconds, and one that just lost its leader
	// needs about an election timeout before it can answer again.
	minAttempt = time.Second
	// retryPause is the pause after an attempt that failed at once (a
	// refused connection, a member without leader), so that a string of
	// quick failures does not spin.
	retryPause = 50 * time.Millisecond
)

// attemptTimeout is the deadline of one attempt of a request: the retry
// timeout shared out among the endpoints, at least minAttempt, so that an
// attempt stuck on a member that holds its connections open without
// answering (a frozen process, a paused machine) gives up in time for the
// next attempts to reach the other members. The client's balancer hands the
// connections out in turn, so the next attempt goes to another member. A
// retry timeout of zero (none given) means one attempt bounded by the
// caller alone.
func attemptTimeout(retryTimeout time.Duration, endpoints int) time.Duration {
	if retryTimeout <= 0 {
		return 0
	}
	return max(retryTimeout/time.Duration(max(endpoints, 1)), minAttempt)
}

// retry runs one request, attempt by attempt, each bounded by per, until
// one succeeds, one fails for a reason another member would give too, or
// ctx ends. fn is told whether an earlier attempt failed (for a write: may
// have landed). per 0 runs a single attempt.
//
// A write retried this way may be applied twice: only writes whose second
// application is harmless (a plain put or delete, a lease keep-alive, a
// transaction that checks its own effect) are retried blindly; the
// conditional writes read back what a failed compare found (see
// CompareAndSet).
func retry(ctx context.Context, per time.Duration, fn func(ctx context.Context, again bool) error) error {
	if per <= 0 {
		return fn(ctx, false)
	}
	for attempt := 0; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, per)
		err := fn(actx, attempt > 0)
		expired := errors.Is(actx.Err(), context.DeadlineExceeded)
		cancel()
		if err == nil || ctx.Err() != nil {
			return err
		}
		if !expired && !transient(err) {
			return err
		}
		if !expired {
			t := time.NewTimer(retryPause)
			select {
			case <-ctx.Done():
				t.Stop()
				return err
			case <-t.C:
			}
		}
	}
}

// transient reports whether an attempt failed for a reason of the member it
// reached or of the moment (no connection, no leader, a leader election),
// so that another attempt may succeed.
func transient(err error) bool {
	switch rpctypes.Error(err) {
	case rpctypes.ErrNoLeader, rpctypes.ErrLeaderChanged, rpctypes.ErrNotCapable,
		rpctypes.ErrTimeout, rpctypes.ErrTimeoutDueToLeaderFail,
		rpctypes.ErrTimeoutDueToConnectionLost, rpctypes.ErrTimeoutWaitAppliedIndex,
		rpctypes.ErrTooManyRequests:
		return true
	}
	if s, ok := status.FromError(err); ok {
		switch s.Code() {
		case codes.Unavailable, codes.DeadlineExceeded:
			return true
		case codes.Unknown:
			// A member whose own wait ran out (a linearizable read waiting
			// for a frozen leader's read index) says so in an Unknown
			// status.
			return strings.Contains(s.Message(), context.DeadlineExceeded.Error())
		}
	}
	return false
}
