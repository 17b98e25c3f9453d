package servers

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"time"
)

// proxyDialTimeout bounds the proxy's connection to its target: the target
// is a server on loopback, which answers at once or not at all.
const proxyDialTimeout = 5 * time.Second

// Proxy forwards TCP connections from a loopback address to a target.
// Stall stops forwarding in both directions without closing anything, as a
// network that drops packets does: the sockets on both sides stay open,
// what is sent is held (a close too), and new connections are accepted but
// carry nothing. Resume delivers what was held and forwards again.
type Proxy struct {
	// Addr is the address clients connect to, "127.0.0.1:<port>".
	Addr   string
	target string
	l      net.Listener

	// gate is held for reading while bytes or a close are passed on, and
	// for writing while open is swapped: once Stall returns, nothing more
	// goes through.
	gate sync.RWMutex
	// open is closed while the proxy forwards; Stall replaces it with an
	// open channel that Resume closes.
	open    chan struct{}
	stalled bool

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed chan struct{}
	wg     sync.WaitGroup
}

// StartProxy listens on addr ("127.0.0.1:0" picks a port) and forwards every
// connection to target until Close.
func StartProxy(addr, target string) (*Proxy, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("proxy: listening on %s: %w", addr, err)
	}
	open := make(chan struct{})
	close(open)
	p := &Proxy{
		Addr:   l.Addr().String(),
		target: target,
		l:      l,
		open:   open,
		conns:  map[net.Conn]struct{}{},
		closed: make(chan struct{}),
	}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Stall stops forwarding. Stalling a stalled proxy does nothing.
func (p *Proxy) Stall() {
	p.gate.Lock()
	defer p.gate.Unlock()
	if !p.stalled {
		p.stalled = true
		p.open = make(chan struct{})
	}
}

// Resume forwards again, first what was held. Resuming a forwarding proxy
// does nothing.
func (p *Proxy) Resume() {
	p.gate.Lock()
	defer p.gate.Unlock()
	if p.stalled {
		p.stalled = false
		close(p.open)
	}
}

// Close stops listening, closes every connection and waits for the
// forwarding goroutines.
func (p *Proxy) Close() {
	p.mu.Lock()
	select {
	case <-p.closed:
		p.mu.Unlock()
		return
	default:
	}
	close(p.closed)
	_ = p.l.Close()
	for c := range p.conns {
		_ = c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		in, err := p.l.Accept()
		if err != nil {
			return
		}
		out, err := net.DialTimeout("tcp", p.target, proxyDialTimeout)
		if err != nil {
			_ = in.Close()
			continue
		}
		if !p.track(in, out) {
			return
		}
		p.wg.Add(2)
		go p.pipe(in, out)
		go p.pipe(out, in)
	}
}

// track registers the connections of one client; false when the proxy is
// closed (they are closed then).
func (p *Proxy) track(cs ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.closed:
		for _, c := range cs {
			_ = c.Close()
		}
		return false
	default:
	}
	for _, c := range cs {
		p.conns[c] = struct{}{}
	}
	return true
}

// pipe copies src to dst through the gate; when src ends it closes both
// (once the gate lets the close through).
func (p *Proxy) pipe(dst, src net.Conn) {
	defer p.wg.Done()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if werr := p.pass(func() error { _, err := dst.Write(buf[:n]); return err }); werr != nil {
				break
			}
		}
		if err != nil {
			break
		}
	}
	_ = p.pass(func() error { return errors.Join(dst.Close(), src.Close()) })
	p.mu.Lock()
	delete(p.conns, src)
	delete(p.conns, dst)
	p.mu.Unlock()
}

// pass waits until the proxy forwards, then runs f; it returns
// net.ErrClosed without running f when the proxy is closed first.
func (p *Proxy) pass(f func() error) error {
	for {
		p.gate.RLock()
		open := p.open
		select {
		case <-open:
			defer p.gate.RUnlock()
			return f()
		default:
		}
		p.gate.RUnlock()
		select {
		case <-open:
		case <-p.closed:
			return net.ErrClosed
		}
	}
}
