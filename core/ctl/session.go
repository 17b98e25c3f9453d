package ctl

import (
	"context"
	"fmt"
	"time"

	"github.com/custos-ha/custos/core/api/client"
	"github.com/custos-ha/custos/core/cluster"
	"github.com/custos-ha/custos/plugin/sdk/dcs"
)

const (
	// requestTimeout bounds one REST call of an operator command. A
	// switchover answers once the new leader is known (Patroni waits up to
	// 2*max(10, loop_wait) s) and a restart once PostgreSQL is up again,
	// which takes up to pg_ctl_timeout (60 s by default) or the restart's
	// own timeout; ten minutes only catch a server that never answers.
	requestTimeout = 10 * time.Minute
	// defaultPollInterval is how often reinit --wait asks the member again
	// (patronictl's 2 s).
	defaultPollInterval = 2 * time.Second
	// pausePollInterval is how often pause --wait re-reads the DCS
	// (patronictl's polling_loop: every second).
	pausePollInterval = time.Second
	// writeGrace is added to retry_timeout for one DCS write, as readGrace
	// for a read.
	writeGrace = readGrace
)

// session is what an operator command works with: the cluster in the DCS
// (read and written through a backend), the members' REST API through a
// client, and the operator at the terminal. Commands take everything from
// it, so tests hand an in-memory DCS and httptest members.
type session struct {
	e   *env
	t   *target
	r   *reader
	api *client.Client
	ask *prompter
}

// openSession resolves the global options and opens the DCS and the REST
// client.
func openSession(e *env, g *globalOptions) (*session, error) {
	t, err := g.resolve(e.lookupEnv, e.executable)
	if err != nil {
		return nil, err
	}
	api, err := client.New(t.clientOptions())
	if err != nil {
		return nil, err
	}
	r, err := openReader(e, t)
	if err != nil {
		api.Close()
		return nil, err
	}
	return &session{e: e, t: t, r: r, api: api, ask: newPrompter(e)}, nil
}

// Close ends the plugin processes and idle connections.
func (s *session) Close() {
	s.r.Close()
	s.api.Close()
}

// clusterName is the cluster a command works on: the argument, or the
// configuration's scope.
func (s *session) clusterName(args []string) (string, error) {
	names, err := s.t.clusterNames(args)
	if err != nil {
		return "", err
	}
	return names[0], nil
}

// read reads a cluster; malformed values are reported as warnings on
// stderr, as list does.
func (s *session) read(ctx context.Context, scope string) (*cluster.Cluster, error) {
	c, problems, err := s.r.Read(ctx, scope)
	if err != nil {
		return nil, err
	}
	for _, p := range problems {
		fmt.Fprintf(s.e.stderr, "Warning: cluster %s: %v\n", scope, p)
	}
	return c, nil
}

// backend is the DCS backend bound to the cluster, for writes.
func (s *session) backend(ctx context.Context, scope string) (dcs.Backend, error) {
	return s.r.backend(ctx, scope)
}

// writeContext bounds one DCS write.
func (s *session) writeContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.t.retryTimeout+writeGrace)
}

// requestContext bounds one REST call.
func (s *session) requestContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, requestTimeout)
}

// printMembers prints the cluster's member table, as patronictl does
// before acting on members.
func (s *session) printMembers(scope string, c *cluster.Cluster) error {
	return newListing(scope, c, false).writePretty(s.e.stdout)
}

// now is the session's clock.
func (s *session) now() time.Time {
	if s.e.now != nil {
		return s.e.now()
	}
	return time.Now()
}

// pollInterval is the period of a --wait, the environment's or def.
func (s *session) pollInterval(def time.Duration) time.Duration {
	if s.e.pollInterval > 0 {
		return s.e.pollInterval
	}
	return def
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// timestamp is patronictl's timestamp() before an action's answer: local
// time with five digits of the second's fraction (patronictl cuts the
// last of strftime's six).
func timestamp(t time.Time) string {
	s := t.Format("2006-01-02 15:04:05.000000")
	return s[:len(s)-1]
}

// timestampSeconds is patronictl's timestamp(0): to the second.
func timestampSeconds(t time.Time) string { return t.Format("2006-01-02 15:04:05") }

// clientOptions are the REST client's settings, Patroni's way: [ctl]
// first, else the [restapi] credentials and certificates; -k or [ctl]
// insecure skips verifying the servers.
func (t *target) clientOptions() client.Options {
	opts := client.Options{Insecure: t.insecure}
	if t.cfg == nil {
		return opts
	}
	ctl, rest := t.cfg.Ctl, t.cfg.RESTAPI
	auth := ctl.Authentication
	if auth.Username == "" {
		auth = rest.Authentication
	}
	opts.Username, opts.Password = auth.Username, auth.Password.Value()
	opts.CACert = firstNonEmpty(ctl.CACert, rest.CAFile)
	opts.CertFile = firstNonEmpty(ctl.CertFile, rest.CertFile)
	opts.KeyFile = firstNonEmpty(ctl.KeyFile, rest.KeyFile)
	opts.KeyFilePassword = ctl.KeyFilePassword.Value()
	if ctl.CertFile == "" && ctl.KeyFile == "" {
		// The key is [restapi]'s: so is its password.
		opts.KeyFilePassword = rest.KeyFilePassword.Value()
	}
	return opts
}

func firstNonEmpty(values ...string) string {
	for _, v := range values {
		if v != "" {
			return v
		}
	}
	return ""
}
