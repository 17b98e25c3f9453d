package servers

import (
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

// TestProxyStallFrom: the connections of one label stall, with what they
// send held, while the others flow; resumed, they get what was held.
// SetLatency slows every connection by at least its delay each way.
func TestProxyStallFrom(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() { // an echo server
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	// Each client dials from a port picked now, which names its label.
	ports, err := FreePorts(2)
	if err != nil {
		t.Fatal(err)
	}
	labels := map[int]string{ports[0]: "a", ports[1]: "b"}
	p, err := StartProxyLabeled("127.0.0.1:0", l.Addr().String(), func(c net.Conn) string {
		return labels[c.RemoteAddr().(*net.TCPAddr).Port]
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	dialFrom := func(port int) net.Conn {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port}}
		c, err := d.Dial("tcp", p.Addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	send := func(c net.Conn, s string) { t.Helper(); connSend(t, c, s) }
	expect := func(c net.Conn, want string) { t.Helper(); connExpect(t, c, want) }
	a, b := dialFrom(ports[0]), dialFrom(ports[1])
	send(a, "1")
	expect(a, "1")
	send(b, "2")
	expect(b, "2")

	p.StallFrom("a")
	p.StallFrom("a")
	send(a, "held")
	connSilent(t, a)
	send(b, "flows")
	expect(b, "flows")
	p.ResumeFrom("a")
	p.ResumeFrom("a")
	expect(a, "held")

	const delay = 100 * time.Millisecond
	p.SetLatency(delay)
	began := time.Now()
	send(b, "slow")
	expect(b, "slow")
	if took := time.Since(began); took < 2*delay {
		t.Errorf("a round trip took %v with %v of latency each way", took, delay)
	}
	p.SetLatency(0)
	send(b, "fast")
	expect(b, "fast")
}

// connSend writes s to c.
func connSend(t testing.TB, c net.Conn, s string) {
	t.Helper()
	if _, err := c.Write([]byte(s)); err != nil {
		t.Fatalf("writing %q: %v", s, err)
	}
}

// connExpect reads want from c within 10 s.
func connExpect(t testing.TB, c net.Conn, want string) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, len(want))
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != want {
		t.Fatalf("read %q (%v), want %q", buf, err, want)
	}
}

// connSilent checks that nothing, not even a close, arrives on c for a
// while: it goes through a stalled proxy.
func connSilent(t testing.TB, c net.Conn) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	n, err := c.Read(make([]byte, 1))
	var ne net.Error
	if n != 0 || !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("read %d bytes (%v) through a stalled proxy, want nothing", n, err)
	}
}
