//go:build linux

package ctl

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func TestCheckReachable(t *testing.T) {
	// Someone who is neither the owner of the files nor in their group.
	stranger := &osUser{Name: "stranger", UID: uint32(os.Getuid()) + 54321, GID: uint32(os.Getgid()) + 54321}
	dir := filepath.Join(t.TempDir(), "private")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "custos")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	// t.TempDir's own directories are private too: open the way up to dir.
	for p := filepath.Dir(dir); p != os.TempDir() && p != filepath.Dir(p); p = filepath.Dir(p) {
		if err := os.Chmod(p, 0o711); err != nil {
			t.Fatal(err)
		}
	}

	err := checkReachable(bin, stranger)
	if err == nil || !strings.Contains(err.Error(), "cannot search the directory "+dir) {
		t.Errorf("private directory: %v", err)
	}
	if err := os.Chmod(dir, 0o711); err != nil {
		t.Fatal(err)
	}
	if err := checkReachable(bin, stranger); err != nil {
		t.Errorf("searchable directory: %v", err)
	}
	if err := os.Chmod(bin, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := checkReachable(bin, stranger); err == nil || !strings.Contains(err.Error(), "cannot execute "+bin) {
		t.Errorf("private binary: %v", err)
	}
	// The owner's bits count for the owner, the group's for the group.
	owner := &osUser{Name: "owner", UID: uint32(os.Getuid()), GID: stranger.GID}
	if err := checkReachable(bin, owner); err != nil {
		t.Errorf("owner: %v", err)
	}
	if err := checkReachable(bin, nil); err != nil {
		t.Errorf("no user switch: %v", err)
	}
}

func TestPostmasterPidIgnoresStaleFiles(t *testing.T) {
	dir := t.TempDir()
	if got := postmasterPid(dir); got != 0 {
		t.Errorf("no pid file: %d", got)
	}
	// Our own pid: alive, but not a postgres process.
	pidFile := filepath.Join(dir, "postmaster.pid")
	if err := os.WriteFile(pidFile, []byte(strings.Join([]string{strconv.Itoa(os.Getpid()), dir, ""}, "\n")), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := postmasterPid(dir); got != 0 {
		t.Errorf("a pid that is not postgres: %d", got)
	}
	if err := os.WriteFile(pidFile, []byte("garbage\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := postmasterPid(dir); got != 0 {
		t.Errorf("garbage: %d", got)
	}
}
