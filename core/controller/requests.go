package controller

import (
	"context"

	"github.com/custos-ha/custos/core/ha"
)

// pending is a request on its way through the loop.
type pending struct {
	req ha.Request
	// wait: reply when the background action the request started ends
	// (a restart), not when it starts.
	wait  bool
	reply chan ha.Reply
}

// Request hands an operator's request to the HA loop and returns its
// reply. With wait, a request that starts a background action (a restart)
// is answered when that action ends. ctx bounds the wait.
func (c *Controller) Request(ctx context.Context, r ha.Request, wait bool) (ha.Reply, error) {
	p := &pending{req: r, wait: wait, reply: make(chan ha.Reply, 1)}
	select {
	case c.requests <- p:
	case <-ctx.Done():
		return ha.Reply{}, ctx.Err()
	}
	select {
	case rep := <-p.reply:
		return rep, nil
	case <-ctx.Done():
		return ha.Reply{}, ctx.Err()
	}
}

// replyTo answers a request after its cycle.
func (c *Controller) replyTo(p *pending, dec ha.Decision, failed error) {
	rep := dec.Reply
	switch {
	case rep == nil:
		// The cycle did not get to the request (the DCS is down, say).
		p.reply <- ha.Reply{Status: ha.ReplyRefused, Message: dec.Reason}
	case rep.Status == ha.ReplyStarted && failed != nil:
		p.reply <- ha.Reply{Status: ha.ReplyRefused, Message: failed.Error()}
	case rep.Status == ha.ReplyStarted && p.wait && c.busy != nil:
		c.answer(&c.waiting, ha.Reply{Status: ha.ReplyRefused, Message: "superseded by another request"})
		c.waiting = p
	default:
		p.reply <- *rep
	}
}

// answer replies to *p, if any, and forgets it.
func (c *Controller) answer(p **pending, rep ha.Reply) {
	if *p == nil {
		return
	}
	(*p).reply <- rep
	*p = nil
}
