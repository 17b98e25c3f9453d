package replica

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	replicav1 "github.com/custos-ha/custos/plugin/sdk/proto/custos/replica/v1"
)

// CancelGrace bounds how long a cancelled CreateReplica waits for the
// plugin to kill its tools and remove the partial copy. Removing a
// half-copied multi-terabyte directory takes a while on slow disks; a
// plugin that has not answered by then is considered hung, the call
// returns, and the host should restart the plugin before touching the
// directory.
const CancelGrace = 2 * time.Minute

// ErrCleanupTimeout is joined to the error of a cancelled CreateReplica
// when the plugin did not confirm its cleanup within CancelGrace.
var ErrCleanupTimeout = errors.New("replica: plugin did not confirm cleanup in time")

// Client is the host side of a replica plugin: a Creator whose calls cross
// the plugin's gRPC connection. Errors come back as the package's
// sentinels or a *sdk.ConfigError.
type Client struct {
	client replicav1.ReplicaServiceClient
}

var _ Creator = (*Client)(nil)

// NewClient wraps a gRPC client of the replica service.
func NewClient(c replicav1.ReplicaServiceClient) *Client { return &Client{client: c} }

// Validate implements Creator.
func (c *Client) Validate(ctx context.Context, method string, config []byte) error {
	_, err := c.client.Validate(ctx, &replicav1.ValidateRequest{Method: method, ConfigJson: config})
	return fromStatus(err)
}

// CreateReplica implements Creator. Cancelling ctx does not cut the stream:
// it asks the plugin to stop and waits (up to CancelGrace) until the
// plugin reports that its tools are dead and the partial copy is gone, so
// that the directory is the caller's again when this returns.
func (c *Client) CreateReplica(ctx context.Context, req Request, progress func(Progress)) error {
	streamCtx, cutStream := context.WithCancel(context.WithoutCancel(ctx))
	defer cutStream()
	stream, err := c.client.CreateReplica(streamCtx)
	if err != nil {
		return fromStatus(err)
	}
	// A failed send means the stream is over; Recv below reports why.
	_ = stream.Send(&replicav1.CreateReplicaInput{Input: &replicav1.CreateReplicaInput_Request{Request: requestToProto(req)}})

	done := make(chan struct{})
	var (
		wg       sync.WaitGroup
		timedOut bool
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		select {
		case <-done:
			return
		case <-ctx.Done():
		}
		_ = stream.Send(&replicav1.CreateReplicaInput{Input: &replicav1.CreateReplicaInput_Cancel{Cancel: &replicav1.Cancel{}}})
		timer := time.NewTimer(CancelGrace)
		defer timer.Stop()
		select {
		case <-done:
		case <-timer.C:
			timedOut = true
			cutStream()
		}
	}()

	for {
		var p *replicav1.Progress
		p, err = stream.Recv()
		if err != nil {
			break
		}
		if progress != nil {
			progress(progressFromProto(p))
		}
	}
	close(done)
	wg.Wait()

	if errors.Is(err, io.EOF) {
		return nil
	}
	err = fromStatus(err)
	if ctxErr := ctx.Err(); ctxErr != nil {
		if timedOut {
			return fmt.Errorf("creating replica: %w", errors.Join(ctxErr, ErrCleanupTimeout))
		}
		return fmt.Errorf("creating replica: %w (plugin: %v)", ctxErr, err)
	}
	return err
}
