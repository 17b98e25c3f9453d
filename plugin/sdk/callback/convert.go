package callback

import (
	"fmt"
	"math"
	"strings"
	"time"

	callbackv1 "github.com/custos-ha/custos/plugin/sdk/proto/custos/callback/v1"
)

// The instants the wire carries: nanoseconds since the Unix epoch in an
// int64, from September 1677 to April 2262.
var (
	minWireTime = time.Unix(0, math.MinInt64)
	maxWireTime = time.Unix(0, math.MaxInt64)
)

// checkEvent refuses an event the contract does not allow, naming every
// problem, as ErrInvalidEvent.
func checkEvent(ev Event) error {
	var problems []string
	if ev.Seq == 0 {
		problems = append(problems, "seq is 0 (events are numbered from 1)")
	}
	if ev.Action == "" {
		problems = append(problems, "no action")
	}
	switch {
	case ev.Time.IsZero():
		problems = append(problems, "no time")
	case ev.Time.Before(minWireTime) || ev.Time.After(maxWireTime):
		problems = append(problems, fmt.Sprintf("time %s is outside what the wire carries (%s to %s)",
			ev.Time.UTC().Format(time.RFC3339), minWireTime.UTC().Format(time.DateOnly), maxWireTime.UTC().Format(time.DateOnly)))
	case ev.Time.UnixNano() == 0:
		problems = append(problems, "time is the Unix epoch, which the wire reads as no time")
	}
	if len(problems) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %s", ErrInvalidEvent, strings.Join(problems, "; "))
}

func eventToProto(ev Event) (*callbackv1.Event, error) {
	if err := checkEvent(ev); err != nil {
		return nil, err
	}
	return &callbackv1.Event{
		Action:       ev.Action,
		Role:         ev.Role,
		Scope:        ev.Scope,
		Member:       ev.Member,
		Seq:          ev.Seq,
		TimeUnixNano: ev.Time.UnixNano(),
	}, nil
}

func eventFromProto(p *callbackv1.Event) (Event, error) {
	if p == nil {
		return Event{}, fmt.Errorf("%w: the request carries no event", ErrInvalidEvent)
	}
	ev := Event{
		Action: p.GetAction(),
		Role:   p.GetRole(),
		Scope:  p.GetScope(),
		Member: p.GetMember(),
		Seq:    p.GetSeq(),
	}
	if n := p.GetTimeUnixNano(); n != 0 {
		ev.Time = time.Unix(0, n).UTC()
	}
	return ev, checkEvent(ev)
}
