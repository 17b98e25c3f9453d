package callback

import (
	"context"
	"errors"
	"fmt"

	callbackv1 "github.com/custos-ha/custos/plugin/sdk/proto/custos/callback/v1"
)

// Client is the host side of a callback plugin: a Receiver whose calls
// cross the plugin's gRPC connection. The call's context crosses with it:
// its deadline and its cancellation end the plugin's context, and the call
// returns when ctx ends even if the plugin does not. Errors come back as
// the package's sentinels, a *sdk.ConfigError, or an error matching
// ctx.Err() once ctx has ended; any other error is the plugin's failure,
// or a transport error when the plugin process is gone.
type Client struct {
	client callbackv1.CallbackServiceClient
}

var _ Receiver = (*Client)(nil)

// NewClient wraps a gRPC client of the callback service.
func NewClient(c callbackv1.CallbackServiceClient) *Client { return &Client{client: c} }

// Validate implements Receiver.
func (c *Client) Validate(ctx context.Context, config []byte) error {
	_, err := c.client.Validate(ctx, &callbackv1.ValidateRequest{ConfigJson: config})
	return callError(ctx, err)
}

// Deliver implements Receiver. An event the contract does not allow
// (checked before sending) is ErrInvalidEvent.
func (c *Client) Deliver(ctx context.Context, config []byte, ev Event) error {
	if err := c.deliver(ctx, config, ev); err != nil {
		return fmt.Errorf("delivering event %d (%s): %w", ev.Seq, ev.Action, err)
	}
	return nil
}

func (c *Client) deliver(ctx context.Context, config []byte, ev Event) error {
	pev, err := eventToProto(ev)
	if err != nil {
		return err
	}
	_, err = c.client.Deliver(ctx, &callbackv1.DeliverRequest{ConfigJson: config, Event: pev})
	return callError(ctx, err)
}

// callError turns a call's gRPC error into the contract's, so that a call
// whose ctx ended matches ctx.Err() whatever the plugin answered.
func callError(ctx context.Context, err error) error {
	err = fromStatus(err)
	if err == nil {
		return nil
	}
	if ctxErr := ctx.Err(); ctxErr != nil && !errors.Is(err, ctxErr) {
		return fmt.Errorf("%w (plugin: %v)", ctxErr, err)
	}
	return err
}
