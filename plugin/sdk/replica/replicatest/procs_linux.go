package replicatest

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// RequireNoProcessMentions checks that, within five seconds
// (leftoverTimeout), no process has path on its command line: the tools
// of a cancelled copy are gone.
func RequireNoProcessMentions(t *testing.T, path string) {
	t.Helper()
	deadline := time.Now().Add(leftoverTimeout)
	for {
		left := processesMentioning(path)
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("processes still running %s after the copy was cancelled: %q", path, left)
			return
		}
		time.Sleep(pollInterval)
	}
}

// processesMentioning lists the command lines that contain s. Zombies
// have an empty command line and do not count: they run nothing.
func processesMentioning(s string) []string {
	matches, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	var out []string
	for _, m := range matches {
		b, err := os.ReadFile(m)
		if err != nil || !bytes.Contains(b, []byte(s)) {
			continue
		}
		out = append(out, string(bytes.ReplaceAll(bytes.TrimRight(b, "\x00"), []byte{0}, []byte{' '})))
	}
	return out
}
