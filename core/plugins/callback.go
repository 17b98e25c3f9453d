package plugins

import (
	"context"
	"fmt"

	"github.com/custos-ha/custos/core/callbacks"
	"github.com/custos-ha/custos/plugin/sdk"
	"github.com/custos-ha/custos/plugin/sdk/callback"
)

// FindCallback starts the callback plugin whose identity says name (the
// <name> of a [callback.<name>] section) and kind callback: the
// conventional binary custos-plugin-callback-<name> first, then the
// others (see FindDCS).
func (h *Host) FindCallback(ctx context.Context, name string) (*Plugin, error) {
	return h.find(ctx, "callback plugin "+fmt.Sprintf("%q", name), sdk.KindCallback+"-"+name, func(id sdk.Identity) bool {
		return id.Name == name && id.Serves(sdk.KindCallback)
	})
}

// Callback returns the plugin's callback receiver, talking to this
// process.
func (p *Plugin) Callback() (callback.Receiver, error) {
	if !p.Identity.Serves(sdk.KindCallback) {
		return nil, fmt.Errorf("plugin %s (%s) does not serve kind %s", p.Binary.Name, p.Identity, sdk.KindCallback)
	}
	raw, err := p.rpc.Dispense(callback.PluginName)
	if err != nil {
		return nil, fmt.Errorf("plugin %s: dispensing the callback service: %w", p.Binary.Name, err)
	}
	r, ok := raw.(callback.Receiver)
	if !ok {
		return nil, fmt.Errorf("plugin %s: callback service has unexpected type %T", p.Binary.Name, raw)
	}
	return r, nil
}

// SupervisedCallback is a callback.Receiver on top of a callback plugin
// process that survives the process's death, as SupervisedDCS does: a
// process that exited is started again (same identity required) and the
// calls wait for it. Validate and Deliver are sent again to the new
// process when the one they went to died before answering (the contract
// has Deliver take the same event twice); a call that gets no live process
// within its deadline fails with an error wrapping
// callbacks.ErrReceiverGone, on which the dispatcher delivers the event
// again. A plugin whose Deliver calls end at their deadline three times in
// a row is killed and started afresh.
type SupervisedCallback struct {
	*supervisor[callback.Receiver]
}

var _ callback.Receiver = (*SupervisedCallback)(nil)

// SuperviseCallback takes ownership of a launched callback plugin and
// supervises it. Close ends the process.
func (h *Host) SuperviseCallback(p *Plugin) (*SupervisedCallback, error) {
	sup, err := newSupervisor(h, p, kindSpec[callback.Receiver]{
		kind:        sdk.KindCallback,
		client:      (*Plugin).Callback,
		unavailable: callbacks.ErrReceiverGone,
		// Any failed call may be the process going away: the client
		// reports a broken connection as the transport's error, which
		// only the process's exit tells from the plugin's own.
		mayBeGone: nil,
	})
	if err != nil {
		return nil, err
	}
	if err := sup.run(); err != nil {
		return nil, err
	}
	return &SupervisedCallback{supervisor: sup}, nil
}

// OpenCallback finds the callback plugin named name (see FindCallback) and
// supervises it. The caller Closes it.
func (h *Host) OpenCallback(ctx context.Context, name string) (*SupervisedCallback, error) {
	p, err := h.FindCallback(ctx, name)
	if err != nil {
		return nil, err
	}
	s, err := h.SuperviseCallback(p)
	if err != nil {
		p.Kill()
		return nil, err
	}
	return s, nil
}

// Validate implements callback.Receiver.
func (s *SupervisedCallback) Validate(ctx context.Context, config []byte) error {
	_, err := s.call(ctx, idempotent, func(r callback.Receiver) error { return r.Validate(ctx, config) })
	return err
}

// Deliver implements callback.Receiver.
func (s *SupervisedCallback) Deliver(ctx context.Context, config []byte, ev callback.Event) error {
	_, err := s.call(ctx, idempotent, func(r callback.Receiver) error { return r.Deliver(ctx, config, ev) })
	return err
}
