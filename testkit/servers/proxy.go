package servers

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
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
// StallFrom and ResumeFrom do the same for the connections of one source
// (StartProxyLabeled), and SetLatency slows every connection down.
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
	// label names the source of each accepted connection (StartProxyLabeled);
	// held maps the labels whose connections are stalled to the channel
	// ResumeFrom closes.
	label func(net.Conn) string
	held  map[string]chan struct{}
	// latency delays every chunk read before it is passed on (SetLatency).
	latency atomic.Int64

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed chan struct{}
	wg     sync.WaitGroup
}

// StartProxy listens on addr ("127.0.0.1:0" picks a port) and forwards every
// connection to target until Close.
func StartProxy(addr, target string) (*Proxy, error) {
	return StartProxyLabeled(addr, target, nil)
}

// StartProxyLabeled is StartProxy with a label for each connection, given
// by label when the connection is accepted (the client's name, found from
// its address): StallFrom and ResumeFrom then stall and resume the
// connections of one label, as a network that drops the packets of one
// link does. A nil label gives every connection the label "".
func StartProxyLabeled(addr, target string, label func(net.Conn) string) (*Proxy, error) {
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
		label:  label,
		held:   map[string]chan struct{}{},
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

// StallFrom stops forwarding the connections labeled from, those open and
// those to come, as Stall does for all. Stalling a stalled label does
// nothing.
func (p *Proxy) StallFrom(from string) {
	p.gate.Lock()
	defer p.gate.Unlock()
	if _, ok := p.held[from]; !ok {
		p.held[from] = make(chan struct{})
	}
}

// ResumeFrom forwards the connections labeled from again (unless the whole
// proxy is stalled). Resuming a label that is not stalled does nothing.
func (p *Proxy) ResumeFrom(from string) {
	p.gate.Lock()
	defer p.gate.Unlock()
	if ch, ok := p.held[from]; ok {
		delete(p.held, from)
		close(ch)
	}
}

// SetLatency delays what the proxy passes on by d in each direction, as a
// slow network does (a request and its answer take 2d more); 0 turns it
// off. Each direction reads what has arrived, waits d and passes it on,
// so bytes that arrive during a wait go with the next read: they wait
// between d and 2d. It applies to open connections too.
func (p *Proxy) SetLatency(d time.Duration) { p.latency.Store(int64(d)) }

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
		from := ""
		if p.label != nil {
			from = p.label(in)
		}
		p.wg.Add(2)
		go p.pipe(in, out, from)
		go p.pipe(out, in, from)
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
func (p *Proxy) pipe(dst, src net.Conn, from string) {
	defer p.wg.Done()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if d := time.Duration(p.latency.Load()); d > 0 && n > 0 {
			time.Sleep(d) // the latency the caller asked for
		}
		if n > 0 {
			if werr := p.pass(from, func() error { _, err := dst.Write(buf[:n]); return err }); werr != nil {
				break
			}
		}
		if err != nil {
			break
		}
	}
	_ = p.pass(from, func() error { return errors.Join(dst.Close(), src.Close()) })
	p.mu.Lock()
	delete(p.conns, src)
	delete(p.conns, dst)
	p.mu.Unlock()
}

// pass waits until the proxy forwards the connections labeled from, then
// runs f; it returns net.ErrClosed without running f when the proxy is
// closed first.
func (p *Proxy) pass(from string, f func() error) error {
	for {
		p.gate.RLock()
		wait := p.open
		select {
		case <-wait:
			held, ok := p.held[from]
			if !ok {
				defer p.gate.RUnlock()
				return f()
			}
			wait = held
		default:
		}
		p.gate.RUnlock()
		select {
		case <-wait:
		case <-p.closed:
			return net.ErrClosed
		}
	}
}
