package plugins

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/custos-ha/custos/plugin/sdk"
	"github.com/custos-ha/custos/plugin/sdk/dcs"
)

// SupervisedDCS is a dcs.Backend on top of a DCS plugin process that
// survives the process's death. When the process has exited, the
// supervisor starts the binary again (at once when it had run fine, else
// after a capped exponential backoff, see restartPolicy), checks that its
// identity is still the same DCS plugin, replays the last successful
// Configure and SetTTL, and only then serves calls with it again.
//
// A call made while the plugin is down waits for the new process, within
// its context's deadline (at most restartWaitMax), and then runs on it. A
// call in flight when the process dies runs again on the new one when it is
// idempotent (a read, a renewal, a write of a whole value); a create-only
// write or a compare-and-set is not repeated, since the first one may have
// been applied, and fails. A call that gets no process in time fails with
// an error wrapping dcs.ErrUnavailable, as for a DCS that cannot be
// reached: the HA loop's DCS-loss rules take over, so a plugin that stays
// down still ends in failsafe mode or a demotion before the leader key
// runs out.
type SupervisedDCS struct {
	*supervisor[dcs.Backend]

	// configure and ttl are the last successful Configure and SetTTL,
	// guarded by the supervisor's mu.
	configure *dcs.ConfigureRequest
	ttl       *time.Duration
	// omitted is the last list of values left out of a read, as logged.
	omitted string
}

var _ dcs.Backend = (*SupervisedDCS)(nil)

// SuperviseDCS takes ownership of a launched DCS plugin and supervises it.
// Closing the returned backend ends the process.
func (h *Host) SuperviseDCS(p *Plugin) (*SupervisedDCS, error) {
	s := &SupervisedDCS{}
	sup, err := newSupervisor(h, p, kindSpec[dcs.Backend]{
		kind:        sdk.KindDCS,
		client:      (*Plugin).DCS,
		replay:      s.replay,
		close:       func(ctx context.Context, b dcs.Backend) error { return b.Close(ctx) },
		unavailable: dcs.ErrUnavailable,
		// A dead process shows as Unavailable; one whose connection the
		// supervisor already closed shows as Canceled, though the
		// caller's context is fine.
		mayBeGone: func(err error) bool {
			return errors.Is(err, dcs.ErrUnavailable) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
		},
	})
	if err != nil {
		return nil, err
	}
	s.supervisor = sup
	if err := sup.run(); err != nil {
		return nil, err
	}
	return s, nil
}

// replay hands a new process the last configuration.
func (s *SupervisedDCS) replay(ctx context.Context, b dcs.Backend) error {
	s.mu.Lock()
	cfg, ttl := s.configure, s.ttl
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, replayTimeout)
	defer cancel()
	if cfg != nil {
		if err := b.Configure(ctx, *cfg); err != nil {
			return fmt.Errorf("replaying configure on plugin %s: %w", s.bin.Name, err)
		}
	}
	if ttl != nil {
		if err := b.SetTTL(ctx, *ttl); err != nil {
			return fmt.Errorf("replaying set ttl on plugin %s: %w", s.bin.Name, err)
		}
	}
	return nil
}

// Validate implements dcs.Backend.
func (s *SupervisedDCS) Validate(ctx context.Context, config []byte) error {
	_, err := s.call(ctx, idempotent, func(b dcs.Backend) error { return b.Validate(ctx, config) })
	return err
}

// Configure implements dcs.Backend. A successful Configure is replayed on
// every restarted process.
func (s *SupervisedDCS) Configure(ctx context.Context, req dcs.ConfigureRequest) error {
	inst, err := s.call(ctx, idempotent, func(b dcs.Backend) error { return b.Configure(ctx, req) })
	if err != nil {
		return err
	}
	req.Config = append([]byte(nil), req.Config...)
	return s.record(inst, "configure", func() { s.configure = &req })
}

// SetTTL implements dcs.Backend. A successful SetTTL is replayed on every
// restarted process.
func (s *SupervisedDCS) SetTTL(ctx context.Context, ttl time.Duration) error {
	inst, err := s.call(ctx, idempotent, func(b dcs.Backend) error { return b.SetTTL(ctx, ttl) })
	if err != nil {
		return err
	}
	return s.record(inst, "set ttl", func() { s.ttl = &ttl })
}

// record keeps a successful Configure or SetTTL for replay. When the
// process that took it has been replaced already, the replacement was set
// up without it: the caller gets ErrUnavailable and calls again.
func (s *SupervisedDCS) record(inst *instance[dcs.Backend], op string, set func()) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	set()
	s.replayGen++
	if s.cur != nil && s.cur != inst {
		return fmt.Errorf("%s: dcs plugin %s was restarted meanwhile: %w", op, s.bin.Name, dcs.ErrUnavailable)
	}
	return nil
}

// GetCluster implements dcs.Backend. Values the plugin left out of the
// read for their size (dcs.Cluster.Omitted) are logged, once for each
// change of the list.
func (s *SupervisedDCS) GetCluster(ctx context.Context) (*dcs.Cluster, error) {
	var c *dcs.Cluster
	_, err := s.call(ctx, idempotent, func(b dcs.Backend) (err error) {
		c, err = b.GetCluster(ctx)
		return err
	})
	if c != nil {
		s.reportOmitted(c.Omitted)
	}
	return c, err
}

// reportOmitted logs the values a read left out, when they changed since
// the last read.
func (s *SupervisedDCS) reportOmitted(omitted []dcs.OmittedValue) {
	var b strings.Builder
	for i, o := range omitted {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s (%d bytes)", o.Path, o.Size)
	}
	list := b.String()
	s.mu.Lock()
	changed := list != s.omitted
	s.omitted = list
	s.mu.Unlock()
	if changed && list != "" {
		s.logger.Error("DCS values too large to read were left out of the cluster read; they read as absent until they are rewritten smaller",
			"values", list, "max_value_bytes", dcs.MaxValueSize)
	}
}

// AcquireLeader implements dcs.Backend.
func (s *SupervisedDCS) AcquireLeader(ctx context.Context) (string, error) {
	var v string
	_, err := s.call(ctx, once, func(b dcs.Backend) (err error) {
		v, err = b.AcquireLeader(ctx)
		return err
	})
	return v, err
}

// RenewLeader implements dcs.Backend.
func (s *SupervisedDCS) RenewLeader(ctx context.Context) error {
	_, err := s.call(ctx, idempotent, func(b dcs.Backend) error { return b.RenewLeader(ctx) })
	return err
}

// TakeLeader implements dcs.Backend.
func (s *SupervisedDCS) TakeLeader(ctx context.Context) error {
	_, err := s.call(ctx, idempotent, func(b dcs.Backend) error { return b.TakeLeader(ctx) })
	return err
}

// DeleteLeader implements dcs.Backend.
func (s *SupervisedDCS) DeleteLeader(ctx context.Context) error {
	_, err := s.call(ctx, idempotent, func(b dcs.Backend) error { return b.DeleteLeader(ctx) })
	return err
}

// TouchMember implements dcs.Backend.
func (s *SupervisedDCS) TouchMember(ctx context.Context, data []byte) error {
	_, err := s.call(ctx, idempotent, func(b dcs.Backend) error { return b.TouchMember(ctx, data) })
	return err
}

// CompareAndSet implements dcs.Backend.
func (s *SupervisedDCS) CompareAndSet(ctx context.Context, key dcs.Key, data []byte, version string) (string, error) {
	var v string
	_, err := s.call(ctx, once, func(b dcs.Backend) (err error) {
		v, err = b.CompareAndSet(ctx, key, data, version)
		return err
	})
	return v, err
}

// CompareAndDelete implements dcs.Backend.
func (s *SupervisedDCS) CompareAndDelete(ctx context.Context, key dcs.Key, version string) error {
	_, err := s.call(ctx, once, func(b dcs.Backend) error { return b.CompareAndDelete(ctx, key, version) })
	return err
}

// Set implements dcs.Backend.
func (s *SupervisedDCS) Set(ctx context.Context, key dcs.Key, data []byte) error {
	_, err := s.call(ctx, idempotent, func(b dcs.Backend) error { return b.Set(ctx, key, data) })
	return err
}

// DeleteCluster implements dcs.Backend.
func (s *SupervisedDCS) DeleteCluster(ctx context.Context) error {
	_, err := s.call(ctx, idempotent, func(b dcs.Backend) error { return b.DeleteCluster(ctx) })
	return err
}

// Watch implements dcs.Backend on the current process. A watch does not
// outlive its process: when the plugin dies mid-watch (or the backend is
// closed), Watch returns an error wrapping dcs.ErrUnavailable: events may
// have been missed, so the caller re-reads the cluster and watches again,
// as after any broken watch. A Watch started while the plugin is down
// waits for the new process, as every call does.
func (s *SupervisedDCS) Watch(ctx context.Context, fn func(dcs.Event)) error {
	_, err := s.do(ctx, false, once, func(b dcs.Backend) error { return b.Watch(ctx, fn) })
	return err
}
