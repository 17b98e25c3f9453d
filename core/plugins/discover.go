package plugins

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/custos-ha/custos/plugin/sdk"
)

// Binary is a plugin executable found in the plugin directory.
type Binary struct {
	// Name is the file name without sdk.BinaryPrefix ("dcs-etcd3"). It keys
	// the [plugins.<name>] configuration section (sha256). The plugin's kind
	// and its own name come from its identity, never from this.
	Name string
	// Path is the absolute path of the file.
	Path string
}

// PermissionError reports a plugin directory or binary that someone other
// than its owner may write: whoever can write there can make the agent run
// code of their choosing.
type PermissionError struct {
	// What is "plugin directory" or "plugin binary".
	What string
	Path string
	Mode fs.FileMode
}

func (e *PermissionError) Error() string {
	return fmt.Sprintf("%s %s is group- or world-writable (mode %s): anyone who can write it could make custos run their code; fix it with `chmod go-w %s`",
		e.What, e.Path, e.Mode, e.Path)
}

// checkNotWritableByOthers refuses a mode with the group or other write bit.
func checkNotWritableByOthers(what, path string, mode fs.FileMode) error {
	if mode.Perm()&0o022 != 0 {
		return &PermissionError{What: what, Path: path, Mode: mode}
	}
	return nil
}

// checkDir checks that dir is a directory that only its owner may write.
func checkDir(dir string) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("reading plugin directory: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("plugin directory %s is not a directory (mode %s)", dir, fi.Mode())
	}
	return checkNotWritableByOthers("plugin directory", dir, fi.Mode())
}

// checkBinary checks that path (after symlinks) is a regular executable
// file that only its owner may write. When path is a symlink, the
// directory of the file it leads to must not be writable by others either,
// or the file could be swapped there.
func checkBinary(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("reading plugin binary: %w", err)
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("plugin binary %s is not an executable file (mode %s)", path, fi.Mode())
	}
	if err := checkNotWritableByOthers("plugin binary", path, fi.Mode()); err != nil {
		return err
	}
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		return fmt.Errorf("resolving plugin binary %s: %w", path, err)
	}
	if filepath.Dir(real) != filepath.Dir(path) {
		return checkDir(filepath.Dir(real))
	}
	return nil
}

// Discover lists the plugin binaries in dir: the regular executable files
// named custos-plugin-<name> (symlinks are followed), sorted by name. Other
// files are ignored. It refuses, with a *PermissionError, a directory that
// is group- or world-writable, a plugin binary that is, and a symlinked
// binary whose target lies in such a directory.
func Discover(dir string) ([]Binary, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("resolving plugin directory %s: %w", dir, err)
	}
	if err := checkDir(abs); err != nil {
		return nil, err
	}
	entries, err := os.ReadDir(abs)
	if err != nil {
		return nil, fmt.Errorf("listing plugin directory: %w", err)
	}
	var bins []Binary
	for _, e := range entries {
		name, ok := strings.CutPrefix(e.Name(), sdk.BinaryPrefix)
		if !ok || name == "" {
			continue
		}
		path := filepath.Join(abs, e.Name())
		fi, err := os.Stat(path)
		if err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
			// Dangling symlinks, directories and data files are not plugins.
			continue
		}
		if err := checkBinary(path); err != nil {
			return nil, err
		}
		bins = append(bins, Binary{Name: name, Path: path})
	}
	return bins, nil
}
