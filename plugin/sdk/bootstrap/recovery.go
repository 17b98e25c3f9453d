package bootstrap

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// recoveryFiles are the files that make PostgreSQL start in recovery:
// the signal files of PostgreSQL 12 and later, and recovery.conf before.
var recoveryFiles = []string{"recovery.signal", "standby.signal", "recovery.conf"}

// recoveryParams are PostgreSQL's recovery settings (and those of
// recovery.conf before PostgreSQL 12), which the host owns.
var recoveryParams = map[string]bool{
	"restore_command": true, "archive_cleanup_command": true, "recovery_end_command": true,
	"recovery_target": true, "recovery_target_name": true, "recovery_target_time": true,
	"recovery_target_xid": true, "recovery_target_lsn": true, "recovery_target_inclusive": true,
	"recovery_target_timeline": true, "recovery_target_action": true,
	"primary_conninfo": true, "primary_slot_name": true, "promote_trigger_file": true,
	"recovery_min_apply_delay": true, "standby_mode": true, "trigger_file": true,
}

// autoConf is the file ALTER SYSTEM writes, and where restore tools put
// their recovery settings.
const autoConf = "postgresql.auto.conf"

// RecoveryConfig lists the recovery configuration a data directory holds:
// the recovery files present (recovery.signal, standby.signal,
// recovery.conf) and the recovery parameters set in postgresql.auto.conf,
// as "postgresql.auto.conf: restore_command". A created cluster must hold
// none (see Creator).
func RecoveryConfig(dataDir string) ([]string, error) {
	var found []string
	for _, f := range recoveryFiles {
		_, err := os.Lstat(filepath.Join(dataDir, f))
		switch {
		case err == nil:
			found = append(found, f)
		case !errors.Is(err, fs.ErrNotExist):
			return nil, fmt.Errorf("checking %s: %w", f, err)
		}
	}
	data, err := os.ReadFile(filepath.Join(dataDir, autoConf))
	if errors.Is(err, fs.ErrNotExist) {
		return found, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", autoConf, err)
	}
	_, removed := stripRecoveryParams(data)
	for _, p := range removed {
		found = append(found, autoConf+": "+p)
	}
	return found, nil
}

// RemoveRecoveryConfig removes the recovery configuration a restore tool
// left in a data directory, as the contract requires on success: the
// recovery files, and the lines of postgresql.auto.conf that set a
// recovery parameter (the other lines are kept).
func RemoveRecoveryConfig(dataDir string) error {
	var errs []error
	for _, f := range recoveryFiles {
		if err := os.Remove(filepath.Join(dataDir, f)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	path := filepath.Join(dataDir, autoConf)
	data, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		errs = append(errs, err)
	default:
		if out, removed := stripRecoveryParams(data); len(removed) > 0 {
			if err := rewrite(path, out); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("removing the recovery configuration of %s: %w", dataDir, err)
	}
	return nil
}

// stripRecoveryParams drops the lines of a configuration file that set a
// recovery parameter and returns the rest and the names dropped.
func stripRecoveryParams(data []byte) ([]byte, []string) {
	var (
		out     bytes.Buffer
		removed []string
	)
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), len(data)+1)
	for sc.Scan() {
		line := sc.Text()
		if name := paramName(line); recoveryParams[name] {
			removed = append(removed, name)
			continue
		}
		out.WriteString(line)
		out.WriteByte('\n')
	}
	return out.Bytes(), removed
}

// paramName returns the lowercased parameter a configuration line sets
// ("name = value", "name value", "name=value"), or "" for a comment or
// blank line.
func paramName(line string) string {
	line = strings.TrimLeft(line, " \t")
	end := strings.IndexFunc(line, func(r rune) bool {
		return !(r == '_' || r == '.' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z')
	})
	if end < 0 {
		end = len(line)
	}
	return strings.ToLower(line[:end])
}

// rewrite replaces a file's content through a temporary file in the same
// directory, keeping its mode.
func rewrite(path string, data []byte) error {
	mode := os.FileMode(0o600)
	if st, err := os.Stat(path); err == nil {
		mode = st.Mode().Perm()
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, mode); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	return nil
}
