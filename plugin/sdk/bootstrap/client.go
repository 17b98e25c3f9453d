package bootstrap

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	bootstrapv1 "github.com/custos-ha/custos/plugin/sdk/proto/custos/bootstrap/v1"
	"github.com/custos-ha/custos/plugin/sdk/replica"
)

// CancelGrace bounds how long a cancelled CreateCluster waits for the
// plugin to kill its tools and remove the partial data: replica's bound,
// for the same reason (removing a half-restored multi-terabyte directory
// takes a while on slow disks). A plugin that has not answered by then is
// considered hung, the call returns, and the host should restart the
// plugin before touching the directory.
const CancelGrace = replica.CancelGrace

// ErrCleanupTimeout is joined to the error of a cancelled CreateCluster
// when the plugin did not confirm its cleanup within CancelGrace.
var ErrCleanupTimeout = errors.New("bootstrap: plugin did not confirm cleanup in time")

// Client is the host side of a bootstrap plugin: a Creator whose calls
// cross the plugin's gRPC connection. Errors come back as the package's
// sentinels or a *sdk.ConfigError; a reply that breaks the contract is
// ErrInvalidResult, never trusted.
type Client struct {
	client bootstrapv1.BootstrapServiceClient
}

var _ Creator = (*Client)(nil)

// NewClient wraps a gRPC client of the bootstrap service.
func NewClient(c bootstrapv1.BootstrapServiceClient) *Client { return &Client{client: c} }

// Validate implements Creator.
func (c *Client) Validate(ctx context.Context, method string, config []byte) error {
	_, err := c.client.Validate(ctx, &bootstrapv1.ValidateRequest{Method: method, ConfigJson: config})
	return fromStatus(err)
}

// CreateCluster implements Creator. A request that breaks Request.Check
// is refused before it is sent, and with ctx already ended nothing is
// sent. Cancelling ctx does not cut the stream: it asks the plugin to stop
// and waits (up to CancelGrace) until the plugin reports that its tools
// are dead and the partial data is gone, so that the directory is the
// caller's again when this returns.
func (c *Client) CreateCluster(ctx context.Context, req Request, progress func(Progress)) (Result, error) {
	if err := req.Check(); err != nil {
		return Result{}, err
	}
	if err := ctx.Err(); err != nil {
		return Result{}, fmt.Errorf("creating cluster: %w", err)
	}
	streamCtx, cutStream := context.WithCancel(context.WithoutCancel(ctx))
	defer cutStream()
	stream, err := c.client.CreateCluster(streamCtx)
	if err != nil {
		return Result{}, fromStatus(err)
	}
	// A failed send means the stream is over; Recv below reports why.
	_ = stream.Send(&bootstrapv1.CreateClusterInput{Input: &bootstrapv1.CreateClusterInput_Request{Request: requestToProto(req)}})

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
		_ = stream.Send(&bootstrapv1.CreateClusterInput{Input: &bootstrapv1.CreateClusterInput_Cancel{Cancel: &bootstrapv1.Cancel{}}})
		timer := time.NewTimer(CancelGrace)
		defer timer.Stop()
		select {
		case <-done:
		case <-timer.C:
			timedOut = true
			cutStream()
		}
	}()

	var (
		res      *Result
		protoErr error // the first break of the stream's protocol
	)
	for {
		var out *bootstrapv1.CreateClusterOutput
		out, err = stream.Recv()
		if err != nil {
			break
		}
		if protoErr != nil {
			continue // read on until the plugin ends the stream
		}
		switch o := out.GetOutput().(type) {
		case *bootstrapv1.CreateClusterOutput_Progress:
			if res != nil {
				protoErr = fmt.Errorf("%w: progress after the result", ErrInvalidResult)
			} else if progress != nil {
				progress(progressFromProto(o.Progress))
			}
		case *bootstrapv1.CreateClusterOutput_Result:
			if res != nil {
				protoErr = fmt.Errorf("%w: a second result", ErrInvalidResult)
			} else {
				r := resultFromProto(o.Result)
				res = &r
			}
		default:
			protoErr = fmt.Errorf("%w: a message with neither progress nor result", ErrInvalidResult)
		}
	}
	close(done)
	wg.Wait()

	if errors.Is(err, io.EOF) {
		switch {
		case protoErr != nil:
			return Result{}, protoErr
		case res == nil:
			return Result{}, fmt.Errorf("%w: the plugin ended without a result", ErrInvalidResult)
		}
		if err := res.Check(); err != nil {
			return Result{}, err
		}
		return *res, nil
	}
	err = fromStatus(err)
	if ctxErr := ctx.Err(); ctxErr != nil {
		if timedOut {
			return Result{}, fmt.Errorf("creating cluster: %w", errors.Join(ctxErr, ErrCleanupTimeout))
		}
		return Result{}, fmt.Errorf("creating cluster: %w (plugin: %v)", ctxErr, err)
	}
	return Result{}, err
}
