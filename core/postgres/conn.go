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
	_, err := p.withConnLocked(ctx, fn)
	return err
}

// withConnRetry is withConn for read-only work: when a connection kept
// from before turns out broken (the server restarted behind our back), fn
// runs once more on a fresh one.
func (p *Postgres) withConnRetry(ctx context.Context, fn func(*pgx.Conn) error) error {
	p.connMu.Lock()
	defer p.connMu.Unlock()
	fresh, err := p.withConnLocked(ctx, fn)
	if err != nil && !fresh && p.conn == nil && ctx.Err() == nil {
		_, err = p.withConnLocked(ctx, fn)
	}
	return err
}

// withConnLocked runs fn and reports whether it connected for it.
func (p *Postgres) withConnLocked(ctx context.Context, fn func(*pgx.Conn) error) (fresh bool, err error) {
	if p.conn != nil && p.conn.IsClosed() {
		p.conn = nil
	}
	if p.conn == nil {
		fresh = true
		cfg, err := p.localConfig()
		if err != nil {
			return true, err
		}
		conn, err := pgx.ConnectConfig(ctx, cfg)
		if err != nil {
			return true, fmt.Errorf("connecting to the local postgres: %w", err)
		}
		p.conn = conn
	}
	err = fn(p.conn)
	if err != nil && (p.conn.IsClosed() || !isServerError(err)) {
		closeCtx, cancel := context.WithTimeout(context.Background(), time.Second)
		_ = p.conn.Close(closeCtx)
		cancel()
		p.conn = nil
	}
	return fresh, err
}

// isServerError tells a PostgreSQL error (the connection is fine) from a
// broken or timed-out connection.
func isServerError(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr)
}

func (p *Postgres) closeConn() {
	p.connMu.Lock()
	defer p.connMu.Unlock()
	if p.conn != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_ = p.conn.Close(ctx)
		cancel()
		p.conn = nil
	}
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
