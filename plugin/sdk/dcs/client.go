package dcs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync/atomic"
	"time"

	dcsv1 "github.com/custos-ha/custos/plugin/sdk/proto/custos/dcs/v1"
)

// Client is the host side of a DCS plugin: a Backend whose calls cross the
// plugin's gRPC connection. Errors come back as the package's sentinels.
type Client struct {
	client dcsv1.DCSServiceClient
	// member is the member name of the last successful Configure, for
	// errors about this member's key.
	member atomic.Pointer[string]
}

var _ Backend = (*Client)(nil)

// NewClient wraps a gRPC client of the DCS service.
func NewClient(c dcsv1.DCSServiceClient) *Client { return &Client{client: c} }

// Validate implements Backend.
func (c *Client) Validate(ctx context.Context, config []byte) error {
	_, err := c.client.Validate(ctx, &dcsv1.ValidateRequest{ConfigJson: config})
	return fromStatus(err)
}

// Configure implements Backend.
func (c *Client) Configure(ctx context.Context, req ConfigureRequest) error {
	_, err := c.client.Configure(ctx, &dcsv1.ConfigureRequest{
		Scope:          req.Scope,
		Namespace:      req.Namespace,
		Member:         req.Member,
		TtlMs:          req.TTL.Milliseconds(),
		RetryTimeoutMs: req.RetryTimeout.Milliseconds(),
		ConfigJson:     req.Config,
	})
	if err == nil {
		c.member.Store(&req.Member)
	}
	return fromStatus(err)
}

// SetTTL implements Backend.
func (c *Client) SetTTL(ctx context.Context, ttl time.Duration) error {
	_, err := c.client.SetTTL(ctx, &dcsv1.SetTTLRequest{TtlMs: ttl.Milliseconds()})
	return fromStatus(err)
}

// GetCluster implements Backend.
func (c *Client) GetCluster(ctx context.Context) (*Cluster, error) {
	resp, err := c.client.GetCluster(ctx, &dcsv1.GetClusterRequest{})
	if err != nil {
		return nil, fromStatus(err)
	}
	return clusterFromProto(resp.GetCluster()), nil
}

// AcquireLeader implements Backend.
func (c *Client) AcquireLeader(ctx context.Context) (string, error) {
	resp, err := c.client.AcquireLeader(ctx, &dcsv1.AcquireLeaderRequest{})
	if err != nil {
		return "", fromStatus(err)
	}
	return resp.GetVersion(), nil
}

// RenewLeader implements Backend.
func (c *Client) RenewLeader(ctx context.Context) error {
	_, err := c.client.RenewLeader(ctx, &dcsv1.RenewLeaderRequest{})
	return fromStatus(err)
}

// TakeLeader implements Backend.
func (c *Client) TakeLeader(ctx context.Context) error {
	_, err := c.client.TakeLeader(ctx, &dcsv1.TakeLeaderRequest{})
	return fromStatus(err)
}

// DeleteLeader implements Backend.
func (c *Client) DeleteLeader(ctx context.Context) error {
	_, err := c.client.DeleteLeader(ctx, &dcsv1.DeleteLeaderRequest{})
	return fromStatus(err)
}

// TouchMember implements Backend.
func (c *Client) TouchMember(ctx context.Context, data []byte) error {
	name := "(not configured)"
	if m := c.member.Load(); m != nil {
		name = *m
	}
	if err := checkValueSize(MembersPath+name, data); err != nil {
		return err
	}
	_, err := c.client.TouchMember(ctx, &dcsv1.TouchMemberRequest{Data: data})
	return fromStatus(err)
}

// CompareAndSet implements Backend.
func (c *Client) CompareAndSet(ctx context.Context, key Key, data []byte, version string) (string, error) {
	pk, ok := keyToProto[key]
	if !ok {
		return "", fmt.Errorf("compare-and-set: unknown key %q", key)
	}
	if err := checkValueSize(string(key), data); err != nil {
		return "", err
	}
	resp, err := c.client.CompareAndSet(ctx, &dcsv1.CompareAndSetRequest{Key: pk, Data: data, Version: version})
	if err != nil {
		return "", fromStatus(err)
	}
	return resp.GetVersion(), nil
}

// CompareAndDelete implements Backend.
func (c *Client) CompareAndDelete(ctx context.Context, key Key, version string) error {
	pk, ok := keyToProto[key]
	if !ok {
		return fmt.Errorf("compare-and-delete: unknown key %q", key)
	}
	_, err := c.client.CompareAndDelete(ctx, &dcsv1.CompareAndDeleteRequest{Key: pk, Version: version})
	return fromStatus(err)
}

// Set implements Backend.
func (c *Client) Set(ctx context.Context, key Key, data []byte) error {
	pk, ok := keyToProto[key]
	if !ok {
		return fmt.Errorf("set: unknown key %q", key)
	}
	if err := checkValueSize(string(key), data); err != nil {
		return err
	}
	_, err := c.client.Set(ctx, &dcsv1.SetRequest{Key: pk, Data: data})
	return fromStatus(err)
}

// DeleteCluster implements Backend.
func (c *Client) DeleteCluster(ctx context.Context) error {
	_, err := c.client.DeleteCluster(ctx, &dcsv1.DeleteClusterRequest{})
	return fromStatus(err)
}

// Watch implements Backend.
func (c *Client) Watch(ctx context.Context, fn func(Event)) error {
	stream, err := c.client.Watch(ctx, &dcsv1.WatchRequest{})
	if err != nil {
		return watchEnd(ctx, err)
	}
	for {
		e, err := stream.Recv()
		if err != nil {
			return watchEnd(ctx, err)
		}
		fn(eventFromProto(e))
	}
}

// watchEnd turns the error that ended a watch stream into Watch's result:
// nil when the caller cancelled, an error otherwise.
func watchEnd(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return nil
	}
	if errors.Is(err, io.EOF) {
		return fmt.Errorf("watch stream ended by the plugin: %w", ErrUnavailable)
	}
	return fromStatus(err)
}

// Close implements Backend.
func (c *Client) Close(ctx context.Context) error {
	_, err := c.client.Close(ctx, &dcsv1.CloseRequest{})
	return fromStatus(err)
}
