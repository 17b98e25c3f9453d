package servers

import (
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestVersionsMatchTools keeps the versions the launchers look for in
// step with the wrapper modules .ci/build-servers builds, which name the
// binaries after their go.mod requirements, and checks that every
// Kubernetes staging module is pinned to the matching release.
func TestVersionsMatchTools(t *testing.T) {
	for _, c := range []struct{ gomod, module, want string }{
		{"../../tools/consul/go.mod", "github.com/hashicorp/consul", ConsulVersion},
		{"../../tools/kube-apiserver/go.mod", "k8s.io/kubernetes", KubeVersion},
		{"../../tools/etcd/go.mod", "go.etcd.io/etcd/server/v3", Etcd36Version},
	} {
		require, _ := goMod(t, c.gomod)
		if got := require[c.module]; got != "v"+c.want {
			t.Errorf("%s requires %s %q; the launchers look for %s", c.gomod, c.module, got, c.want)
		}
	}
	_, replace := goMod(t, "../../tools/kube-apiserver/go.mod")
	staging := "v0" + strings.TrimPrefix(KubeVersion, "1")
	if len(replace) < 20 {
		t.Errorf("tools/kube-apiserver replaces %d staging modules; kubernetes has about 30", len(replace))
	}
	for m, v := range replace {
		if !strings.HasPrefix(m, "k8s.io/") || v != staging {
			t.Errorf("tools/kube-apiserver replaces %s with %s, want %s", m, v, staging)
		}
	}
}

// goMod returns module -> version of the require and replace lines of a
// go.mod (replace targets keyed by the replaced module).
func goMod(t *testing.T, path string) (require, replace map[string]string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	require, replace = map[string]string{}, map[string]string{}
	block := ""
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) == 0 || strings.HasPrefix(f[0], "//"):
		case f[0] == ")":
			block = ""
		case len(f) == 2 && f[1] == "(":
			block = f[0]
		case f[0] == "require" && len(f) >= 3:
			require[f[1]] = f[2]
		case block == "require" && len(f) >= 2:
			require[f[0]] = f[1]
		case block == "replace" && len(f) == 4 && f[1] == "=>":
			replace[f[0]] = f[3]
		}
	}
	return require, replace
}

// TestProxyStall: a stalled proxy holds bytes and closes in both
// directions without closing the client's connection, takes new
// connections without carrying anything on them, and delivers what it held
// once resumed.
func TestProxyStall(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	// The server echoes, and closes a connection after echoing "bye".
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 64)
				for {
					n, err := c.Read(buf)
					if err != nil {
						return
					}
					if _, err := c.Write(buf[:n]); err != nil || string(buf[:n]) == "bye" {
						return
					}
				}
			}()
		}
	}()
	p, err := StartProxy("127.0.0.1:0", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	dial := func() net.Conn {
		c, err := net.Dial("tcp", p.Addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	send := func(c net.Conn, s string) { t.Helper(); connSend(t, c, s) }
	expect := func(c net.Conn, want string) { t.Helper(); connExpect(t, c, want) }
	silent := func(c net.Conn) { t.Helper(); connSilent(t, c) }

	old := dial()
	send(old, "hello")
	expect(old, "hello")
	p.Stall()
	send(old, "bye") // the server answers and closes, once it gets it
	silent(old)
	fresh := dial()
	send(fresh, "new")
	silent(fresh)
	p.Resume()
	expect(old, "bye")
	_ = old.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := old.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Fatalf("after the server closed: read %d bytes, %v; want EOF", n, err)
	}
	expect(fresh, "new")

	// Stall and Resume may be repeated.
	send(fresh, "again")
	expect(fresh, "again")
	p.Stall()
	p.Stall()
	send(fresh, "held")
	silent(fresh)
	p.Resume()
	p.Resume()
	expect(fresh, "held")
}

// TestMissingBinary: a launcher without its binary says how to get it.
func TestMissingBinary(t *testing.T) {
	t.Setenv("CUSTOS_CACHE", t.TempDir())
	_, err := StartConsul(ConsulConfig{})
	if err == nil || !strings.Contains(err.Error(), "make servers") {
		t.Fatalf("StartConsul without a binary: %v, want how to build it", err)
	}
}

// TestWaitsForBuildInProgress: a launcher whose binary is being built waits
// for it, and says where the build's log is when the build ends without it.
func TestWaitsForBuildInProgress(t *testing.T) {
	cache := t.TempDir()
	t.Setenv("CUSTOS_CACHE", cache)
	bin := filepath.Join(cache, "bin", "consul-"+ConsulVersion)
	if err := os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
		t.Fatal(err)
	}
	// A build in progress: this process stands for the builder.
	marker := bin + ".building"
	if err := os.WriteFile(marker, []byte(strconv.Itoa(os.Getpid())+" /build/consul.log\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	got := make(chan error, 1)
	go func() {
		_, err := ConsulBinary()
		got <- err
	}()
	select {
	case err := <-got:
		t.Fatalf("ConsulBinary returned (%v) while the build runs", err)
	case <-time.After(300 * time.Millisecond): // it should still wait
	}
	if err := os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := <-got; err != nil {
		t.Fatalf("after the build: %v", err)
	}

	// A build that ends without the binary.
	_ = os.Remove(bin)
	go func() {
		_, err := ConsulBinary()
		got <- err
	}()
	time.Sleep(100 * time.Millisecond) // let it see the build running
	_ = os.Remove(marker)
	if err := <-got; err == nil || !strings.Contains(err.Error(), "/build/consul.log") {
		t.Fatalf("after a failed build: %v, want the build's log named", err)
	}
}
