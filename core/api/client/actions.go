package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// Endpoints of the mutating calls, as Patroni names them.
const (
	EndpointSwitchover   = "switchover"
	EndpointFailover     = "failover"
	EndpointRestart      = "restart"
	EndpointReinitialize = "reinitialize"
	EndpointReload       = "reload"
	EndpointConfig       = "config"
	EndpointPatroni      = "patroni"
)

// Response is a REST answer whatever its status code: operator commands
// print Patroni's messages, which come as the body of 2xx and 4xx/5xx
// answers alike.
type Response struct {
	StatusCode int
	// Body is the answer's text with trailing white space removed.
	Body string
}

// OK reports a 2xx answer.
func (r Response) OK() bool { return r.StatusCode >= 200 && r.StatusCode < 300 }

// SwitchoverRequest is the body of POST /switchover. Leader is required by
// the server; ScheduledAt is an ISO 8601 time with a zone.
type SwitchoverRequest struct {
	Leader      string `json:"leader,omitempty"`
	Candidate   string `json:"candidate,omitempty"`
	ScheduledAt string `json:"scheduled_at,omitempty"`
}

// FailoverRequest is the body of POST /failover (Patroni 4.x: a candidate
// only; a failover cannot be scheduled).
type FailoverRequest struct {
	Candidate string `json:"candidate"`
}

// RestartRequest is the body of POST /restart. Every field is optional;
// the node evaluates the conditions itself.
type RestartRequest struct {
	// Schedule is an ISO 8601 time with a zone.
	Schedule string `json:"schedule,omitempty"`
	// Role restricts the restart to a node with this role ("primary",
	// "replica", "standby_leader").
	Role string `json:"role,omitempty"`
	// PostgresVersion restarts only when the running version is lower.
	PostgresVersion string `json:"postgres_version,omitempty"`
	// Timeout bounds the restart ("30s", "30"); past it the node may fail
	// over as after a crash.
	Timeout string `json:"timeout,omitempty"`
	// RestartPending restarts only when a changed setting needs it.
	RestartPending bool `json:"restart_pending,omitempty"`
}

// ReinitializeRequest is the body of POST /reinitialize.
type ReinitializeRequest struct {
	// Force cancels a running action (a restart, a replica creation) first.
	Force bool `json:"force"`
	// FromLeader clones from the leader even when a clonefrom member
	// exists (Patroni 4.x).
	FromLeader bool `json:"from_leader,omitempty"`
}

// Switchover asks the leader at apiURL to hand over (or to schedule it).
func (c *Client) Switchover(ctx context.Context, apiURL string, req SwitchoverRequest) (Response, error) {
	return c.Do(ctx, http.MethodPost, apiURL, EndpointSwitchover, req)
}

// Failover asks the member at apiURL to fail over to the candidate.
func (c *Client) Failover(ctx context.Context, apiURL string, req FailoverRequest) (Response, error) {
	return c.Do(ctx, http.MethodPost, apiURL, EndpointFailover, req)
}

// DeleteSwitchover cancels a scheduled switchover.
func (c *Client) DeleteSwitchover(ctx context.Context, apiURL string) (Response, error) {
	return c.Do(ctx, http.MethodDelete, apiURL, EndpointSwitchover, nil)
}

// Restart restarts PostgreSQL on the member at apiURL, now or at
// req.Schedule.
func (c *Client) Restart(ctx context.Context, apiURL string, req RestartRequest) (Response, error) {
	return c.Do(ctx, http.MethodPost, apiURL, EndpointRestart, req)
}

// DeleteRestart cancels the member's scheduled restart.
func (c *Client) DeleteRestart(ctx context.Context, apiURL string) (Response, error) {
	return c.Do(ctx, http.MethodDelete, apiURL, EndpointRestart, nil)
}

// Reinitialize wipes the member's data directory and clones it again.
func (c *Client) Reinitialize(ctx context.Context, apiURL string, req ReinitializeRequest) (Response, error) {
	return c.Do(ctx, http.MethodPost, apiURL, EndpointReinitialize, req)
}

// FailsafeRequest is the body a primary POSTs to /failsafe while the DCS
// is down, to every other member listed in /failsafe; a replica answers
// "Accepted" with its WAL position in the lsn header.
type FailsafeRequest struct {
	Name    string           `json:"name"`
	ConnURL string           `json:"conn_url"`
	APIURL  string           `json:"api_url"`
	Slots   map[string]int64 `json:"slots,omitempty"`
}

// Failsafe POSTs /failsafe; a replica answers 200 "Accepted".
func (c *Client) Failsafe(ctx context.Context, apiURL string, req FailsafeRequest) (Response, error) {
	return c.Do(ctx, http.MethodPost, apiURL, "failsafe", req)
}

// Reload makes the member re-read its configuration file.
func (c *Client) Reload(ctx context.Context, apiURL string) (Response, error) {
	return c.Do(ctx, http.MethodPost, apiURL, EndpointReload, nil)
}

// PatchConfig merges patch into the dynamic configuration; a nil value
// deletes its key.
func (c *Client) PatchConfig(ctx context.Context, apiURL string, patch map[string]any) (Response, error) {
	return c.Do(ctx, http.MethodPatch, apiURL, EndpointConfig, patch)
}

// PutConfig replaces the dynamic configuration.
func (c *Client) PutConfig(ctx context.Context, apiURL string, cfg map[string]any) (Response, error) {
	return c.Do(ctx, http.MethodPut, apiURL, EndpointConfig, cfg)
}

// EndpointURL is the URL of an endpoint of the member whose api_url is
// given: its scheme, user info and host with the endpoint as the path, as
// Patroni's clients build it (the api_url's own path, "/patroni", is
// dropped).
func EndpointURL(apiURL, endpoint string) (string, error) {
	u, err := url.Parse(apiURL)
	if err != nil {
		return "", fmt.Errorf("api_url %q: %w", apiURL, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return "", fmt.Errorf("api_url %q is not an http(s) URL", apiURL)
	}
	return (&url.URL{Scheme: u.Scheme, User: u.User, Host: u.Host, Path: "/" + strings.TrimLeft(endpoint, "/")}).String(), nil
}

// Do sends one request to an endpoint of the member at apiURL, body (if
// not nil) as JSON, with the client's basic auth on unsafe methods (see
// Options.Username), and returns the answer
// whatever its status. Only a failure to get an answer is an error; it
// names the method and URL. The call is bounded by ctx alone: a switchover
// or a restart answers once it is done.
func (c *Client) Do(ctx context.Context, method, apiURL, endpoint string, body any) (Response, error) {
	target, err := EndpointURL(apiURL, endpoint)
	if err != nil {
		return Response{}, fmt.Errorf("%s %s: %w", method, endpoint, err)
	}
	var reader io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return Response{}, fmt.Errorf("%s %s: encoding the body: %w", method, target, err)
		}
		reader = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, target, reader)
	if err != nil {
		return Response{}, fmt.Errorf("%s %s: %w", method, target, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.auth != "" && unsafeMethod(method) {
		req.Header.Set("Authorization", c.auth)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return Response{}, fmt.Errorf("%s %s: %w", method, target, err)
	}
	defer func() { _ = resp.Body.Close() }()
	text, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return Response{}, fmt.Errorf("%s %s: reading the answer: %w", method, target, err)
	}
	return Response{StatusCode: resp.StatusCode, Body: strings.TrimRight(string(bytes.ToValidUTF8(text, nil)), " \t\r\n")}, nil
}

// unsafeMethod reports the methods the REST API guards with its access
// checks; only those carry the client's credentials.
func unsafeMethod(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return false
	}
	return true
}
