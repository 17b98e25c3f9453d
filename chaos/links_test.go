package main

import (
	"net"
	"os"
	"testing"
)

// socketInode finds the client's socket of a loopback connection by its
// ports, and parentOf reads a process's parent.
func TestSocketInodeAndParent(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	local, server := c.LocalAddr().(*net.TCPAddr), l.Addr().(*net.TCPAddr)
	inode := socketInode(local.Port, server.Port)
	if inode == "" {
		t.Fatalf("no socket from port %d to %d in /proc/net/tcp", local.Port, server.Port)
	}
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, fd := range fds {
		if target, err := os.Readlink("/proc/self/fd/" + fd.Name()); err == nil && target == "socket:["+inode+"]" {
			found = true
		}
	}
	if !found {
		t.Errorf("socket inode %s is not one of this process's", inode)
	}
	if got := socketInode(local.Port, local.Port); got != "" {
		t.Errorf("a socket from port %d to itself: %s", local.Port, got)
	}
	if got, want := parentOf(os.Getpid()), os.Getppid(); got != want {
		t.Errorf("parentOf(self) = %d, want %d", got, want)
	}
}
