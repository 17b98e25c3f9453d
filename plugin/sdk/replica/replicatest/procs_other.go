//go:build !linux

package replicatest

import "testing"

// RequireNoProcessMentions needs /proc; elsewhere the kit relies on the
// data directory check alone.
func RequireNoProcessMentions(*testing.T, string) {}
