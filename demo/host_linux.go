//go:build linux

package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"syscall"
)

// checkReachable reports what keeps u from running path: a directory on
// the way it cannot search, or the file it cannot execute (root's rights
// are not u's).
func checkReachable(path string, u *osUser) error {
	if u == nil {
		return nil
	}
	path, err := filepath.Abs(path)
	if err != nil {
		return err
	}
	for p := path; ; p = filepath.Dir(p) {
		fi, err := os.Stat(p)
		if err != nil {
			return err
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			return nil
		}
		var bit os.FileMode = 0o001
		switch {
		case st.Uid == u.Cred.Uid:
			bit = 0o100
		case st.Gid == u.Cred.Gid || slices.Contains(u.Cred.Groups, st.Gid):
			bit = 0o010
		}
		if fi.Mode().Perm()&bit == 0 {
			what := "search the directory"
			if p == path && !fi.IsDir() {
				what = "execute"
			}
			return fmt.Errorf("the %s user cannot %s %s (mode %s), so it cannot run %s: put the binaries where others can read them (e.g. /opt/custos), or run the demo as a user that may run PostgreSQL",
				u.Name, what, p, fi.Mode().Perm(), path)
		}
		if p == filepath.Dir(p) {
			return nil
		}
	}
}
