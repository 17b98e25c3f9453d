package postgres

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/jackc/pgx/v5"
)

// initdbArgs builds initdb's command line: the data directory, the
// superuser, a pwfile when it has a password, the user's options, and
// --auth-local=trust --auth-host=scram-sha-256 unless the options set
// authentication themselves.
func initdbArgs(cfg Config, pwfile string) []string {
	args := []string{"--pgdata=" + cfg.DataDir, "--username=" + cfg.Superuser.Username}
	if pwfile != "" {
		args = append(args, "--pwfile="+pwfile)
	}
	has := func(names ...string) bool {
		for _, o := range cfg.InitdbOptions {
			name, _, _ := strings.Cut(strings.TrimPrefix(o, "--"), "=")
			for _, n := range names {
				if name == n {
					return true
				}
			}
		}
		return false
	}
	if !has("auth", "auth-local") {
		args = append(args, "--auth-local=trust")
	}
	if !has("auth", "auth-host") {
		args = append(args, "--auth-host=scram-sha-256")
	}
	return append(args, cfg.InitdbOptions...)
}

// Bootstrap creates a new cluster with initdb and writes the agent's files
// for a primary: initdb's postgresql.conf becomes postgresql.base.conf.
// The superuser password goes through a temporary pwfile (mode 0600,
// removed afterwards). The data directory must be absent or empty.
func (p *Postgres) Bootstrap(ctx context.Context) error {
	switch st, err := p.DataDirState(); st {
	case DirAbsent, DirEmpty:
	default:
		if err == nil {
			err = fmt.Errorf("data directory %s is %s", p.c().cfg.DataDir, st)
		}
		return fmt.Errorf("bootstrapping with initdb: %w", err)
	}
	// Ownership only: initdb sets the mode of an empty directory itself.
	if err := checkDataDir(p.c().cfg.DataDir, false); err != nil {
		return fmt.Errorf("bootstrapping with initdb: %w", err)
	}
	var pwfile string
	if pw := p.c().cfg.Superuser.Password; pw != "" {
		dir, err := os.MkdirTemp("", "custos-initdb-")
		if err != nil {
			return fmt.Errorf("bootstrapping with initdb: creating the pwfile: %w", err)
		}
		defer os.RemoveAll(dir)
		pwfile = filepath.Join(dir, "pwfile")
		if err := os.WriteFile(pwfile, []byte(pw+"\n"), 0o600); err != nil {
			return fmt.Errorf("bootstrapping with initdb: writing the pwfile: %w", err)
		}
	}
	cmd := p.command(ctx, p.bin(BinInitdb), initdbArgs(p.c().cfg, pwfile)...)
	cmd.Env = p.Env() // the user's locale decides the cluster's default
	if _, err := runCommand(cmd); err != nil {
		return fmt.Errorf("bootstrapping with initdb: %w", err)
	}
	p.logger.Info("initialized a new cluster", "data_dir", p.c().cfg.DataDir)
	if err := p.Configure(Setup{}); err != nil {
		return fmt.Errorf("bootstrapping: %w", err)
	}
	return nil
}

// CreateRoles creates (or updates the password of) the replication role
// and, when configured, the rewind role with the grants pg_rewind needs;
// run it on the new primary after bootstrap. It is idempotent. The
// statements are not logged by the server (log_statement is off for the
// transaction), since they carry passwords.
func (p *Postgres) CreateRoles(ctx context.Context) error {
	err := p.withConn(ctx, func(c *pgx.Conn) error {
		tx, err := c.Begin(ctx)
		if err != nil {
			return err
		}
		defer tx.Rollback(ctx) //nolint:errcheck // after Commit it is a no-op
		for _, s := range []string{
			"SET LOCAL log_statement = 'none'",
			"SET LOCAL log_min_duration_statement = -1",
			"SET LOCAL log_min_error_statement = 'panic'",
			"SET LOCAL standard_conforming_strings = on",
			"SET LOCAL synchronous_commit = 'local'",
		} {
			if _, err := tx.Exec(ctx, s); err != nil {
				return fmt.Errorf("%s: %w", s, err)
			}
		}
		su := p.c().cfg.Superuser.Username
		if r := p.c().cfg.Replication; r.Username != su {
			if err := ensureRole(ctx, tx, r, "REPLICATION LOGIN"); err != nil {
				return err
			}
		}
		if r := p.c().cfg.Rewind; r.Username != "" && r.Username != su {
			if err := ensureRole(ctx, tx, r, "LOGIN"); err != nil {
				return err
			}
			user := pgx.Identifier{r.Username}.Sanitize()
			for _, fn := range rewindFunctions {
				if _, err := tx.Exec(ctx, "GRANT EXECUTE ON FUNCTION "+fn+" TO "+user); err != nil {
					return fmt.Errorf("granting %s to %s: %w", fn, r.Username, err)
				}
			}
		}
		return tx.Commit(ctx)
	})
	if err != nil {
		return fmt.Errorf("creating roles: %w", err)
	}
	return nil
}

// rewindFunctions are what pg_rewind calls on the source (PostgreSQL 11+).
var rewindFunctions = []string{
	"pg_catalog.pg_ls_dir(text, boolean, boolean)",
	"pg_catalog.pg_stat_file(text, boolean)",
	"pg_catalog.pg_read_binary_file(text)",
	"pg_catalog.pg_read_binary_file(text, bigint, bigint, boolean)",
}

// ensureRole creates the role or, when it exists, resets its attributes
// and password.
func ensureRole(ctx context.Context, tx pgx.Tx, cr Credentials, attrs string) error {
	var exists bool
	if err := tx.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)", cr.Username).Scan(&exists); err != nil {
		return fmt.Errorf("looking up role %s: %w", cr.Username, err)
	}
	verb := "CREATE"
	if exists {
		verb = "ALTER"
	}
	stmt := verb + " ROLE " + pgx.Identifier{cr.Username}.Sanitize() + " WITH " + attrs
	if cr.Password != "" {
		stmt += " PASSWORD " + quoteLiteral(cr.Password)
	}
	if _, err := tx.Exec(ctx, stmt); err != nil {
		// The statement holds the password: report the role only.
		return fmt.Errorf("%s ROLE %s: %w", verb, cr.Username, redactErr(err, cr.Password))
	}
	return nil
}

// quoteLiteral quotes a string literal for standard_conforming_strings=on.
func quoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// redactErr drops a password from an error's text.
func redactErr(err error, secret string) error {
	if secret == "" || !strings.Contains(err.Error(), secret) {
		return err
	}
	return fmt.Errorf("%s", strings.ReplaceAll(err.Error(), secret, "<redacted>"))
}
