package testenv

import (
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"
)

// TestServerVersions keeps the versions the launchers look for in step with
// the wrapper modules .ci/build-consul and .ci/build-kube build, which name
// the binaries after their go.mod requirements.
func TestServerVersions(t *testing.T) {
	for _, c := range []struct{ gomod, module, want string }{
		{"../../../tools/consul/go.mod", "github.com/hashicorp/consul", ConsulVersion},
		{"../../../tools/kube-apiserver/go.mod", "k8s.io/kubernetes", KubeVersion},
		{"../../../tools/etcd/go.mod", "go.etcd.io/etcd/server/v3", Etcd36Version},
	} {
		data, err := os.ReadFile(c.gomod)
		if err != nil {
			t.Fatal(err)
		}
		got := ""
		for _, line := range strings.Split(string(data), "\n") {
			f := strings.Fields(strings.TrimPrefix(strings.TrimSpace(line), "require "))
			if len(f) >= 2 && f[0] == c.module {
				got = strings.TrimPrefix(f[1], "v")
				break
			}
		}
		if got != c.want {
			t.Errorf("%s requires %s %q; the launchers look for %s", c.gomod, c.module, got, c.want)
		}
	}
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
	p := StartProxy(t, "127.0.0.1:0", l.Addr().String())
	dial := func() net.Conn {
		c, err := net.Dial("tcp", p.Addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	send := func(c net.Conn, s string) {
		if _, err := c.Write([]byte(s)); err != nil {
			t.Fatalf("writing %q: %v", s, err)
		}
	}
	expect := func(c net.Conn, want string) {
		t.Helper()
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		buf := make([]byte, len(want))
		if _, err := io.ReadFull(c, buf); err != nil || string(buf) != want {
			t.Fatalf("read %q (%v), want %q", buf, err, want)
		}
	}
	// silent checks that nothing, not even a close, arrives for a while.
	silent := func(c net.Conn) {
		t.Helper()
		_ = c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		n, err := c.Read(make([]byte, 1))
		var ne net.Error
		if n != 0 || !errors.As(err, &ne) || !ne.Timeout() {
			t.Fatalf("read %d bytes (%v) through a stalled proxy, want nothing", n, err)
		}
	}

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
