package etcd3

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestAttemptTimeout(t *testing.T) {
	for _, tc := range []struct {
		retry     time.Duration
		endpoints int
		want      time.Duration
	}{
		{0, 3, 0},
		{4 * time.Second, 1, 4 * time.Second},
		{4 * time.Second, 3, 4 * time.Second / 3},
		{10 * time.Second, 3, 10 * time.Second / 3},
		{2 * time.Second, 3, time.Second},
		{4 * time.Second, 0, 4 * time.Second},
	} {
		if got := attemptTimeout(tc.retry, tc.endpoints); got != tc.want {
			t.Errorf("attemptTimeout(%v, %d) = %v, want %v", tc.retry, tc.endpoints, got, tc.want)
		}
	}
}

func TestTransient(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{rpctypes.ErrGRPCNoLeader, true},
		{rpctypes.ErrGRPCLeaderChanged, true},
		{rpctypes.ErrGRPCTimeout, true},
		{status.Error(codes.Unavailable, "connection refused"), true},
		{status.Error(codes.DeadlineExceeded, "context deadline exceeded"), true},
		// A member whose read index from a frozen leader timed out.
		{status.Error(codes.Unknown, "context deadline exceeded"), true},
		{status.Error(codes.Unknown, "something else"), false},
		{rpctypes.ErrGRPCLeaseNotFound, false},
		{rpctypes.ErrGRPCCompacted, false},
		{rpctypes.ErrGRPCPermissionDenied, false},
		{status.Error(codes.InvalidArgument, "bad"), false},
		{errors.New("plain"), false},
		{context.DeadlineExceeded, false},
	} {
		if got := transient(tc.err); got != tc.want {
			t.Errorf("transient(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

// hang blocks until the attempt's context ends, as a request to a frozen
// etcd member does.
func hang(ctx context.Context) error {
	<-ctx.Done()
	return ctx.Err()
}

func TestRetryMovesOnAfterAHungAttempt(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	var agains []bool
	start := time.Now()
	err := retry(ctx, 100*time.Millisecond, func(ctx context.Context, again bool) error {
		agains = append(agains, again)
		if len(agains) < 3 {
			return hang(ctx)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(agains) != 3 || agains[0] || !agains[1] || !agains[2] {
		t.Errorf("attempts told again = %v, want [false true true]", agains)
	}
	if d := time.Since(start); d < 200*time.Millisecond || d > 600*time.Millisecond {
		t.Errorf("took %v, want about two attempt deadlines", d)
	}
}

func TestRetryStopsAtTheOperationDeadline(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 350*time.Millisecond)
	defer cancel()
	n := 0
	start := time.Now()
	err := retry(ctx, 100*time.Millisecond, func(ctx context.Context, _ bool) error {
		n++
		return hang(ctx)
	})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want the deadline", err)
	}
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Errorf("took %v, past the operation's deadline", d)
	}
	if n != 4 {
		t.Errorf("%d attempts, want 4 (the last one cut short)", n)
	}
}

func TestRetryReturnsPermanentErrors(t *testing.T) {
	n := 0
	err := retry(context.Background(), time.Second, func(context.Context, bool) error {
		n++
		return rpctypes.ErrGRPCLeaseNotFound
	})
	if !errors.Is(err, rpctypes.ErrGRPCLeaseNotFound) || n != 1 {
		t.Errorf("err = %v after %d attempts, want the error after one", err, n)
	}
}

func TestRetryPausesAfterQuickFailures(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 275*time.Millisecond)
	defer cancel()
	n := 0
	err := retry(ctx, time.Second, func(context.Context, bool) error {
		n++
		return rpctypes.ErrGRPCNoLeader
	})
	if !errors.Is(err, rpctypes.ErrGRPCNoLeader) {
		t.Errorf("err = %v, want the last attempt's", err)
	}
	if n < 3 || n > 7 {
		t.Errorf("%d attempts in 275 ms, want one about every %v", n, retryPause)
	}
}

func TestRetryWithoutAttemptTimeoutTriesOnce(t *testing.T) {
	n := 0
	err := retry(context.Background(), 0, func(context.Context, bool) error {
		n++
		return rpctypes.ErrGRPCNoLeader
	})
	if err == nil || n != 1 {
		t.Errorf("err = %v after %d attempts, want one failed attempt", err, n)
	}
}
