package kube

import (
	"context"
	"fmt"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/custos-ha/custos/plugin/sdk/dcs"
)

// formatTime renders a time as Patroni writes acquireTime and renewTime:
// ISO 8601 in UTC with microseconds and the offset.
func formatTime(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000000+00:00") }

// ttlSeconds is the ttl annotation: whole seconds, rounded up.
func ttlSeconds(ttl time.Duration) string {
	return strconv.FormatInt(int64((ttl+time.Second-1)/time.Second), 10)
}

// leaderState is what the leader object says about the lock, judged on the
// local clock.
type leaderState struct {
	holder string
	// live: the holder's record changed within its TTL of local time.
	live bool
	// hasRecord: any of the record's annotations is there.
	hasRecord bool
	ann       map[string]string
}

func (c *connection) leaderState(cur *object, now time.Time) leaderState {
	if cur == nil {
		return leaderState{}
	}
	record := leaderRecord(cur.annotations)
	s := leaderState{holder: cur.annotations[annLeader], hasRecord: record != "", ann: cur.annotations}
	if record != "" {
		since := c.viewer.obs.observe(leaderID, cur.rv, record, now)
		s.live, _ = alive(since, recordTTL(cur.annotations, c.ttlNow()), now)
	}
	return s
}

// heldByOther reports whether another member holds a live lock.
func (s leaderState) heldByOther(member string) bool {
	return s.holder != "" && s.live && s.holder != member
}

// acquireChange takes the lock for this member, as Patroni's
// attempt_to_acquire_leader: transitions goes up by one when the holder
// changes, acquireTime is kept when re-acquiring one's own expired lock,
// and in Endpoints mode the subsets are emptied (the new leader is not
// primary yet; its first renewal points them at it).
func (c *connection) acquireChange(s leaderState, now time.Time) *change {
	ts := formatTime(now)
	acquire := ts
	transitions := 0
	if s.hasRecord {
		transitions, _ = strconv.Atoi(s.ann[annTransitions])
		if s.holder != c.member {
			transitions++
		} else if prev := s.ann[annAcquireTime]; prev != "" {
			acquire = prev
		}
	}
	ch := &change{labels: c.labelChange()}
	ttl := ttlSeconds(c.ttlNow())
	tr := strconv.Itoa(transitions)
	ch.setAnnotation(annLeader, &c.member)
	ch.setAnnotation(annAcquireTime, &acquire)
	ch.setAnnotation(annRenewTime, &ts)
	ch.setAnnotation(annTTL, &ttl)
	ch.setAnnotation(annTransitions, &tr)
	if c.layout.endpoints {
		ch.setSubsets = true
	}
	return ch
}

// renewChange renews this member's lock: renewTime moves on, the rest of
// the record stays; in Endpoints mode the subsets point at this member's
// address once it is known.
func (c *connection) renewChange(s leaderState, now time.Time) *change {
	ts := formatTime(now)
	acquire := s.ann[annAcquireTime]
	if acquire == "" {
		acquire = ts
	}
	tr := s.ann[annTransitions]
	if tr == "" {
		tr = "0"
	}
	ttl := ttlSeconds(c.ttlNow())
	ch := &change{labels: c.labelChange()}
	ch.setAnnotation(annLeader, &c.member)
	ch.setAnnotation(annAcquireTime, &acquire)
	ch.setAnnotation(annRenewTime, &ts)
	ch.setAnnotation(annTTL, &ttl)
	ch.setAnnotation(annTransitions, &tr)
	if c.layout.endpoints {
		if subsets := c.leaderSubsets(); subsets != nil {
			ch.subsets, ch.setSubsets = subsets, true
		}
	}
	return ch
}

// leaderSubsets are the leader Endpoints' subsets for this member: its
// address (pod_ip, else its Pod's IP) and the configured ports; nil when
// the address is unknown, in which case the subsets are left as they are.
func (c *connection) leaderSubsets() []corev1.EndpointSubset {
	ip := c.cfg.PodIP
	pod, havePod := c.observer.memberObject(c.member)
	if havePod && c.memberStore != MemberStorePod {
		havePod = false
	}
	if ip == "" && havePod {
		ip = pod.podIP
	}
	if ip == "" {
		return nil
	}
	addr := corev1.EndpointAddress{IP: ip}
	if havePod {
		addr.TargetRef = &corev1.ObjectReference{Kind: "Pod", Namespace: c.namespace, Name: pod.name, UID: types.UID(pod.uid)}
		if pod.nodeName != "" {
			node := pod.nodeName
			addr.NodeName = &node
		}
	}
	ports := make([]corev1.EndpointPort, len(c.cfg.Ports))
	for i, p := range c.cfg.Ports {
		ports[i] = corev1.EndpointPort{Name: p.Name, Port: int32(p.Port), Protocol: corev1.Protocol(p.Protocol)}
		if ports[i].Protocol == "" {
			ports[i].Protocol = corev1.ProtocolTCP
		}
	}
	return []corev1.EndpointSubset{{Addresses: []corev1.EndpointAddress{addr}, Ports: ports}}
}

// leaderOp runs a leader operation as a conditional update of the leader
// object and returns its resourceVersion afterwards.
func (c *connection) leaderOp(ctx context.Context, op string, decide func(s leaderState, now time.Time) (*change, error)) (string, error) {
	ctx, cancel := c.opContext(ctx)
	defer cancel()
	name := c.layout.leaderName()
	written, _, err := c.update(ctx, c.kinds, name, func(cur *object) (*change, error) {
		now := time.Now()
		return decide(c.leaderState(cur, now), now)
	})
	if err != nil {
		if isSentinel(err) {
			return "", err
		}
		return "", storeErr(ctx, fmt.Sprintf("%s %s", op, describe(c.kinds, c.namespace, name)), err)
	}
	return written.rv, nil
}

// AcquireLeader takes the lock if nobody holds a live one: the leader
// record is absent, released, or has not changed for its TTL on this
// reader's clock. The write is conditional on the resourceVersion read, so
// of concurrent callers exactly one wins.
func (b *Backend) AcquireLeader(ctx context.Context) (string, error) {
	c, err := b.connection()
	if err != nil {
		return "", err
	}
	return c.leaderOp(ctx, "acquiring the leader lock in", func(s leaderState, now time.Time) (*change, error) {
		if s.holder != "" && s.live {
			return nil, fmt.Errorf("acquiring the leader lock: held by %s: %w", s.holder, dcs.ErrExists)
		}
		return c.acquireChange(s, now), nil
	})
}

// RenewLeader renews this member's lock (renewTime = now); a lock another
// member holds live is ErrVersionMismatch; a lock that is gone or expired is
// acquired again.
func (b *Backend) RenewLeader(ctx context.Context) error {
	c, err := b.connection()
	if err != nil {
		return err
	}
	_, err = c.leaderOp(ctx, "renewing the leader lock in", func(s leaderState, now time.Time) (*change, error) {
		switch {
		case s.holder == c.member:
			return c.renewChange(s, now), nil
		case s.heldByOther(c.member):
			return nil, fmt.Errorf("renewing the leader lock: held by %s: %w", s.holder, dcs.ErrVersionMismatch)
		}
		return c.acquireChange(s, now), nil
	})
	return err
}

// TakeLeader writes this member into the lock whoever holds it.
func (b *Backend) TakeLeader(ctx context.Context) error {
	c, err := b.connection()
	if err != nil {
		return err
	}
	_, err = c.leaderOp(ctx, "taking the leader lock in", func(s leaderState, now time.Time) (*change, error) {
		if s.holder == c.member {
			return c.renewChange(s, now), nil
		}
		return c.acquireChange(s, now), nil
	})
	return err
}

// DeleteLeader releases this member's lock as Patroni does: the leader
// annotation is removed (the rest of the record stays, so the next holder
// counts a transition) and in Endpoints mode the subsets are emptied. A
// lock held live by another member is ErrVersionMismatch; an absent or
// expired one is nothing to do.
func (b *Backend) DeleteLeader(ctx context.Context) error {
	c, err := b.connection()
	if err != nil {
		return err
	}
	_, err = c.leaderOp(ctx, "releasing the leader lock in", func(s leaderState, _ time.Time) (*change, error) {
		switch {
		case s.holder == "":
			return nil, nil
		case s.holder != c.member && s.live:
			return nil, fmt.Errorf("releasing the leader lock: held by %s: %w", s.holder, dcs.ErrVersionMismatch)
		case s.holder != c.member:
			return nil, nil // expired: reads as absent
		}
		ch := &change{}
		ch.setAnnotation(annLeader, nil)
		if c.layout.endpoints {
			ch.setSubsets = true
		}
		return ch, nil
	})
	return err
}
