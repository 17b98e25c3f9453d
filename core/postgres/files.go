package postgres

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Configure writes the agent-owned files of an initialized data directory
// for setup: postgresql.conf (including postgresql.base.conf and, for a
// standby, the recovery settings), pg_hba.conf and pg_ident.conf when lines
// are configured, the pgpass file, and standby.signal (present for a
// standby, absent otherwise; recovery.signal is always removed).
//
// It is also the one call to make after pg_basebackup or pg_rewind, which
// copy the source's files: a postgresql.conf not written by the agent is
// kept as postgresql.base.conf, and the recovery settings that
// pg_basebackup -R or ALTER SYSTEM put into postgresql.auto.conf are
// removed so they cannot override the agent's.
//
// The setup is remembered (LastSetup), so that the same files can be
// rewritten after a configuration change (Reconfigure).
func (p *Postgres) Configure(setup Setup) error {
	dd := p.c().cfg.DataDir
	if st, err := dirState(dd); st != DirInitialized {
		if err == nil {
			err = fmt.Errorf("data directory %s is %s", dd, st)
		}
		return fmt.Errorf("configuring PostgreSQL: %w", err)
	}
	major, err := p.MajorVersion()
	if err != nil {
		return fmt.Errorf("configuring PostgreSQL: %w", err)
	}
	files, err := p.Render(major, setup)
	if err != nil {
		return err
	}
	if err := p.ensureBaseConf(); err != nil {
		return err
	}
	if !setup.KeepRecovery {
		if err := p.sanitizeAutoConf(); err != nil {
			return err
		}
	}
	if err := writeFileAtomic(filepath.Join(dd, confFile), []byte(files.PostgresqlConf), 0o600); err != nil {
		return fmt.Errorf("writing postgresql.conf: %w", err)
	}
	if files.WriteHBA {
		if err := writeFileAtomic(p.confPath("hba_file", hbaFile), []byte(files.HBA), 0o600); err != nil {
			return fmt.Errorf("writing pg_hba.conf: %w", err)
		}
	}
	if files.WriteIdent {
		if err := writeFileAtomic(p.confPath("ident_file", identFile), []byte(files.Ident), 0o600); err != nil {
			return fmt.Errorf("writing pg_ident.conf: %w", err)
		}
	}
	if err := p.writePgpass(files.Pgpass); err != nil {
		return err
	}
	if !files.KeepSignals {
		if err := setSignalFile(filepath.Join(dd, standbySignalFile), files.StandbySignal); err != nil {
			return err
		}
		if err := setSignalFile(filepath.Join(dd, recoverySignal), files.RecoverySignal); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(p.c().cfg.LogDir, 0o700); err != nil {
		return fmt.Errorf("creating log directory: %w", err)
	}
	p.mu.Lock()
	p.setup, p.setupSet = setup, true
	p.mu.Unlock()
	return nil
}

// LastSetup returns the setup Configure last wrote and whether there was
// one.
func (p *Postgres) LastSetup() (Setup, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.setup, p.setupSet
}

// confPath resolves hba_file/ident_file when set in the parameters.
func (p *Postgres) confPath(param, def string) string {
	if v := strings.TrimSpace(p.c().cfg.Parameters[param]); v != "" {
		if filepath.IsAbs(v) {
			return v
		}
		return filepath.Join(p.c().cfg.DataDir, v)
	}
	return filepath.Join(p.c().cfg.DataDir, def)
}

// ensureBaseConf keeps a postgresql.conf that the agent did not write as
// postgresql.base.conf, and makes sure the include target exists.
func (p *Postgres) ensureBaseConf() error {
	conf := filepath.Join(p.c().cfg.DataDir, confFile)
	base := filepath.Join(p.c().cfg.DataDir, baseConfFile)
	data, err := os.ReadFile(conf)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return fmt.Errorf("reading postgresql.conf: %w", err)
	case !bytes.HasPrefix(data, []byte(confMarker)):
		// initdb's file, or a foreign one copied by a backup tool: it
		// becomes the base the agent's file includes.
		if err := os.Rename(conf, base); err != nil {
			return fmt.Errorf("keeping postgresql.conf as postgresql.base.conf: %w", err)
		}
		p.logger.Info("kept the existing postgresql.conf as postgresql.base.conf")
		return nil
	}
	if _, err := os.Stat(base); errors.Is(err, fs.ErrNotExist) {
		if err := writeFileAtomic(base, []byte("# Base configuration included by postgresql.conf.\n"), 0o600); err != nil {
			return fmt.Errorf("writing postgresql.base.conf: %w", err)
		}
	} else if err != nil {
		return fmt.Errorf("checking postgresql.base.conf: %w", err)
	}
	return nil
}

// sanitizeAutoConf removes recovery settings from postgresql.auto.conf:
// they would override the agent's (pg_basebackup -R writes
// primary_conninfo there).
func (p *Postgres) sanitizeAutoConf() error {
	path := filepath.Join(p.c().cfg.DataDir, autoConfFile)
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading postgresql.auto.conf: %w", err)
	}
	out, removed := stripParams(data, recoveryParams)
	if len(removed) == 0 {
		return nil
	}
	if err := writeFileAtomic(path, out, 0o600); err != nil {
		return fmt.Errorf("rewriting postgresql.auto.conf: %w", err)
	}
	p.logger.Info("removed recovery settings from postgresql.auto.conf", "settings", strings.Join(removed, ","))
	return nil
}

// stripParams drops the lines of a configuration file that set one of the
// named parameters.
func stripParams(data []byte, names map[string]bool) ([]byte, []string) {
	var out bytes.Buffer
	var removed []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		name := trimmed
		if i := strings.IndexAny(trimmed, " \t="); i >= 0 {
			name = trimmed[:i]
		}
		if !strings.HasPrefix(trimmed, "#") && names[strings.ToLower(name)] {
			removed = append(removed, strings.ToLower(name))
			continue
		}
		out.WriteString(line)
		out.WriteByte('\n')
	}
	return out.Bytes(), removed
}

// writePgpass writes the pgpass file with mode 0600 (libpq ignores a file
// that others can read).
func (p *Postgres) writePgpass(content string) error {
	if err := os.MkdirAll(filepath.Dir(p.c().cfg.Pgpass), 0o700); err != nil {
		return fmt.Errorf("creating the pgpass directory: %w", err)
	}
	if err := writeFileAtomic(p.c().cfg.Pgpass, []byte(content), 0o600); err != nil {
		return fmt.Errorf("writing pgpass file %s: %w", p.c().cfg.Pgpass, err)
	}
	return nil
}

// WritePgpass writes only the pgpass file, for tools that run before the
// data directory exists (pg_basebackup).
func (p *Postgres) WritePgpass() error { return p.writePgpass(renderPgpass(p.c().cfg)) }

func setSignalFile(path string, present bool) error {
	if present {
		if err := os.WriteFile(path, nil, 0o600); err != nil {
			return fmt.Errorf("writing %s: %w", filepath.Base(path), err)
		}
		return nil
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("removing %s: %w", filepath.Base(path), err)
	}
	return nil
}

// writeFileAtomic writes to a temporary file beside path, syncs it and
// renames it over path, so a crash leaves the old or the new file.
func writeFileAtomic(path string, data []byte, perm fs.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	name := tmp.Name()
	defer os.Remove(name) // no-op after the rename
	if err := writeSyncClose(tmp, data, perm); err != nil {
		return err
	}
	return os.Rename(name, path)
}

// writeSyncClose sets the mode of a new file (past the umask), writes data,
// syncs it to disk and closes it; the file is closed whatever fails.
func writeSyncClose(f *os.File, data []byte, perm fs.FileMode) error {
	err := f.Chmod(perm)
	if err == nil {
		_, err = f.Write(data)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// ErrRestartRequired is returned by Follow when the new upstream only
// takes effect after a restart (PostgreSQL 12: primary_conninfo is not
// reloadable).
var ErrRestartRequired = errors.New("postgres: restart required")

// Follow points a standby at upstream (nil: none) by rewriting its files
// and, when it runs, reloading it (PostgreSQL 13+ applies primary_conninfo
// and primary_slot_name on reload). A stopped server follows upstream on
// its next Start.
func (p *Postgres) Follow(ctx context.Context, upstream *Upstream) error {
	if err := p.Configure(Setup{Standby: true, Upstream: upstream}); err != nil {
		return fmt.Errorf("following: %w", err)
	}
	if !p.IsRunning() {
		return nil
	}
	major, err := p.MajorVersion()
	if err != nil {
		return fmt.Errorf("following: %w", err)
	}
	if major < 13 {
		return fmt.Errorf("following: PostgreSQL %d: %w", major, ErrRestartRequired)
	}
	return p.Reload(ctx)
}

// HasBackupLabel reports whether the data directory holds a backup_label:
// a fresh clone or a rewound directory that has not been started yet.
func (p *Postgres) HasBackupLabel() bool {
	return fileExists(filepath.Join(p.c().cfg.DataDir, "backup_label"))
}

// LocalHistory reads the history file of timeline from the local pg_wal;
// timeline 1 has none.
func (p *Postgres) LocalHistory(timeline int) ([]HistoryEntry, error) {
	if timeline <= 1 {
		return nil, nil
	}
	path := filepath.Join(p.c().cfg.DataDir, "pg_wal", HistoryFileName(timeline))
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading timeline history: %w", err)
	}
	h, err := ParseHistory(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return h, nil
}
