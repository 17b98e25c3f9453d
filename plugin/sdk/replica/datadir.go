package replica

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// DataDir is a target data directory claimed for a copy. It remembers
// whether the directory existed so that Reset can put it back as found.
type DataDir struct {
	path    string
	existed bool
}

// ClaimDataDir checks that dir is absent or an empty directory, as the
// contract requires before a copy, and returns ErrDataDirNotEmpty (wrapped
// with the path) otherwise. Like PostgreSQL's own tools it counts hidden
// files and lost+found as contents: a mount point needs a subdirectory.
func ClaimDataDir(dir string) (*DataDir, error) {
	if dir == "" {
		return nil, fmt.Errorf("claiming data directory: no path given: %w", ErrInvalidRequest)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("claiming data directory %s: %w", dir, err)
	}
	st, err := os.Stat(abs)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return &DataDir{path: abs}, nil
	case err != nil:
		return nil, fmt.Errorf("claiming data directory %s: %w", abs, err)
	case !st.IsDir():
		return nil, fmt.Errorf("claiming data directory %s: not a directory: %w", abs, ErrDataDirNotEmpty)
	}
	entries, err := os.ReadDir(abs)
	if err != nil {
		return nil, fmt.Errorf("claiming data directory %s: %w", abs, err)
	}
	if len(entries) > 0 {
		return nil, fmt.Errorf("claiming data directory %s (holds %s): %w", abs, entries[0].Name(), ErrDataDirNotEmpty)
	}
	return &DataDir{path: abs, existed: true}, nil
}

// Path is the absolute path of the directory.
func (d *DataDir) Path() string { return d.path }

// Existed reports whether the directory existed (empty) when claimed.
func (d *DataDir) Existed() bool { return d.existed }

// Reset puts the directory back as it was claimed: empty, or absent when
// it did not exist. The targets of a pg_wal link and of the tablespace
// links in pg_tblspc were empty or absent before the copy too (the tools
// refuse anything else), so their contents are removed as well; the link
// targets themselves are left in place.
func (d *DataDir) Reset() error {
	var errs []error
	for _, link := range d.links() {
		target, err := filepath.EvalSymlinks(link)
		if err != nil {
			continue // a dangling link: nothing to empty
		}
		if err := removeContents(target); err != nil {
			errs = append(errs, err)
		}
	}
	if d.existed {
		errs = append(errs, removeContents(d.path))
	} else if err := os.RemoveAll(d.path); err != nil {
		errs = append(errs, fmt.Errorf("removing %s: %w", d.path, err))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("resetting data directory %s: %w", d.path, err)
	}
	return nil
}

// links lists pg_wal and pg_tblspc/* when they are symbolic links.
func (d *DataDir) links() []string {
	candidates := []string{filepath.Join(d.path, "pg_wal")}
	if entries, err := os.ReadDir(filepath.Join(d.path, "pg_tblspc")); err == nil {
		for _, e := range entries {
			candidates = append(candidates, filepath.Join(d.path, "pg_tblspc", e.Name()))
		}
	}
	var out []string
	for _, c := range candidates {
		if st, err := os.Lstat(c); err == nil && st.Mode()&fs.ModeSymlink != 0 {
			out = append(out, c)
		}
	}
	return out
}

// removeContents removes everything inside dir, keeping dir.
func removeContents(dir string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("emptying %s: %w", dir, err)
	}
	var errs []error
	for _, e := range entries {
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Empty reports whether dir is absent or an empty directory.
func Empty(dir string) (bool, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return true, nil
	}
	if err != nil {
		return false, err
	}
	return len(entries) == 0, nil
}
