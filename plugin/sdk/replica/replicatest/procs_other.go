//go:build !linux

package replicatest

import "testing"

// requireNoProcessMentions needs /proc; elsewhere the kit relies on the
// data directory check alone.
func requireNoProcessMentions(*testing.T, string) {}
