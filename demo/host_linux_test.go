//go:build linux

package main

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestCheckReachable(t *testing.T) {
	// Someone who is neither the owner of the files nor in their group.
	stranger := &osUser{Name: "stranger", Cred: &syscall.Credential{Uid: uint32(os.Getuid()) + 54321, Gid: uint32(os.Getgid()) + 54321}}
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
	owner := &osUser{Name: "owner", Cred: &syscall.Credential{Uid: uint32(os.Getuid()), Gid: stranger.Cred.Gid}}
	if err := checkReachable(bin, owner); err != nil {
		t.Errorf("owner: %v", err)
	}
	if err := checkReachable(bin, nil); err != nil {
		t.Errorf("no user switch: %v", err)
	}
}
