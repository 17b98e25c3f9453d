package postgres

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

const (
	// connectTimeout bounds connecting to the local server; it is local,
	// so anything slower means it is not answering.
	connectTimeout = 3 * time.Second
	// applicationName marks the agent's own sessions in pg_stat_activity.
	applicationName = "custos"
)

// localConfig is the pgx configuration of the agent's connection to its
// own server as the superuser, over the unix socket when one is configured.
func (p *Postgres) localConfig() (*pgx.ConnConfig, error) {
	host := localHost(p.c().cfg, p.c().listen)
	kv := [][2]string{
		{"host", host},
		{"port", strconv.Itoa(p.c().listen.port)},
		{"user", p.c().cfg.Superuser.Username},
		{"dbname", "postgres"},
		{"application_name", applicationName},
		{"connect_timeout", strconv.Itoa(int(connectTimeout / time.Second))},
	}
	if host != "" && host[0] == '/' {
		kv = append(kv, [2]string{"sslmode", "disable"})
	} else {
		for _, k := range sortedKeys(p.c().cfg.Superuser.SSL) {
			kv = append(kv, [2]string{k, p.c().cfg.Superuser.SSL[k]})
		}
	}
	cfg, err := pgx.ParseConfig(joinConninfo(kv))
	if err != nil {
		return nil, fmt.Errorf("building the local connection config: %w", err)
	}
	// Set after parsing: the password never goes through a string that
	// could end up in an error message.
	cfg.Password = p.c().cfg.Superuser.Password
	return cfg, nil
}

// withConn runs fn on the long-lived local connection, connecting first
// when there is none. A connection that broke is dropped so the next call
// reconnects.
func (p *Postgres) withConn(ctx context.Context, fn func(*pgx.Conn) error) error {
	p.connMu.Lock()
	defer p.connMu.Unlock()
	_, err := p.runOn(ctx, &p.conn, fn)
	return err
}

// withConnRetry is withConn for read-only work (see retryOn).
func (p *Postgres) withConnRetry(ctx context.Context, fn func(*pgx.Conn) error) error {
	p.connMu.Lock()
	defer p.connMu.Unlock()
	return p.retryOn(ctx, &p.conn, fn)
}

// retryOn is runOn for read-only work: when a connection kept from before
// turns out broken (the server restarted behind our back), fn runs once
// more on a fresh one.
func (p *Postgres) retryOn(ctx context.Context, slot **pgx.Conn, fn func(*pgx.Conn) error) error {
	fresh, err := p.runOn(ctx, slot, fn)
	if err != nil && !fresh && *slot == nil && ctx.Err() == nil {
		_, err = p.runOn(ctx, slot, fn)
	}
	return err
}

// runOn runs fn on the connection in slot, connecting first when there is
// none, and reports whether it connected for it. A connection that broke
// is closed and cleared so the next call reconnects. The caller holds the
// slot's lock.
func (p *Postgres) runOn(ctx context.Context, slot **pgx.Conn, fn func(*pgx.Conn) error) (fresh bool, err error) {
	if *slot != nil && (*slot).IsClosed() {
		*slot = nil
	}
	if *slot == nil {
		fresh = true
		cfg, err := p.localConfig()
		if err != nil {
			return true, err
		}
		conn, err := pgx.ConnectConfig(ctx, cfg)
		if err != nil {
			return true, fmt.Errorf("connecting to the local postgres: %w", err)
		}
		*slot = conn
	}
	err = fn(*slot)
	if err != nil && ((*slot).IsClosed() || !isServerError(err)) {
		closeCtx, cancel := context.WithTimeout(context.Background(), time.Second)
		_ = (*slot).Close(closeCtx)
		cancel()
		*slot = nil
	}
	return fresh, err
}

// isServerError tells a PostgreSQL error (the connection is fine) from a
// broken or timed-out connection.
func isServerError(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr)
}

// closeConn closes the agent's connections (before a stop, so that none
// keeps the server's shutdown waiting).
func (p *Postgres) closeConn() {
	p.connMu.Lock()
	closeSlot(&p.conn)
	p.connMu.Unlock()
	p.apiSem <- struct{}{}
	closeSlot(&p.apiConn)
	<-p.apiSem
}

func closeSlot(slot **pgx.Conn) {
	if *slot != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_ = (*slot).Close(ctx)
		cancel()
		*slot = nil
	}
}

// withAPIConn runs fn on the REST API's own connection (see Positions),
// waiting for it no longer than ctx allows.
func (p *Postgres) withAPIConn(ctx context.Context, fn func(*pgx.Conn) error) error {
	select {
	case p.apiSem <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("waiting for the REST API's connection, busy with another request: %w", ctx.Err())
	}
	defer func() { <-p.apiSem }()
	return p.retryOn(ctx, &p.apiConn, fn)
}

// Exec runs a statement on the local server as the superuser (the HA core
// uses it for ALTER SYSTEM-free tweaks such as synchronous_standby_names
// checks). Arguments are bound, never interpolated.
func (p *Postgres) Exec(ctx context.Context, sql string, args ...any) error {
	return p.withConn(ctx, func(c *pgx.Conn) error {
		_, err := c.Exec(ctx, sql, args...)
		return err
	})
}

// Checkpoint runs CHECKPOINT (after a promote, before a switchover).
func (p *Postgres) Checkpoint(ctx context.Context) error {
	if err := p.Exec(ctx, "CHECKPOINT"); err != nil {
		return fmt.Errorf("running CHECKPOINT: %w", err)
	}
	return nil
}
