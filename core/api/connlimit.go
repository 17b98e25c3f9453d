package api

import (
	"net"
	"net/http"
	"sync"
	"time"
)

// connLimiter is restapi.request_queue_size: at most n connections are
// served at once. Patroni passes the value to listen(2) as the backlog of a
// server that answers one request at a time; Go's server has no such queue
// (it serves every accepted connection at once, and the kernel's backlog
// is net.core.somaxconn), so the honest equivalent is a cap on the
// connections being served. Further clients wait in the kernel's backlog
// until one ends; none is refused. A health check is answered from memory
// in microseconds, so a handful of slots is plenty; the cap keeps a flood
// of slow clients from making the agent hold thousands of connections.
//
// A kept-alive connection holds its slot while it is open. So that idle
// ones (a peer's client keeps two, a Prometheus scraper one) never make a
// health check wait, a connection waiting for a slot closes the connection
// that has been idle longest, as the server would at IdleTimeout; an HTTP
// client reopens a closed kept-alive connection as a matter of course.
type connLimiter struct {
	net.Listener
	// slots holds one token per connection being served.
	slots chan struct{}
	done  chan struct{}
	once  sync.Once
	// idleNow wakes an Accept waiting for a slot when a connection goes
	// idle.
	idleNow chan struct{}

	mu sync.Mutex
	// idle holds the served connections waiting for their next request
	// (http.StateIdle), by the net.Conn the server sees, since when.
	idle map[net.Conn]time.Time
}

func newConnLimiter(ln net.Listener, n int) *connLimiter {
	return &connLimiter{
		Listener: ln,
		slots:    make(chan struct{}, n),
		done:     make(chan struct{}),
		idleNow:  make(chan struct{}, 1),
		idle:     map[net.Conn]time.Time{},
	}
}

// Accept takes the next connection once a slot is free.
func (l *connLimiter) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	for {
		select {
		case l.slots <- struct{}{}:
			return &limitedConn{Conn: c, release: l.release}, nil
		default:
		}
		if l.closeOldestIdle() {
			// Closing it gave its slot back.
			continue
		}
		select {
		case l.slots <- struct{}{}:
			return &limitedConn{Conn: c, release: l.release}, nil
		case <-l.idleNow:
			// A served connection went idle: close it.
		case <-l.done:
			_ = c.Close()
			return nil, net.ErrClosed
		}
	}
}

func (l *connLimiter) release() { <-l.slots }

// Close stops accepting and wakes an Accept waiting for a slot.
func (l *connLimiter) Close() error {
	l.once.Do(func() { close(l.done) })
	return l.Listener.Close()
}

// connState is the server's ConnState hook: it keeps track of the idle
// connections.
func (l *connLimiter) connState(c net.Conn, st http.ConnState) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if st == http.StateIdle {
		l.idle[c] = time.Now()
		select {
		case l.idleNow <- struct{}{}:
		default:
		}
		return
	}
	delete(l.idle, c)
}

// closeOldestIdle closes the connection idle longest and reports whether
// there was one.
func (l *connLimiter) closeOldestIdle() bool {
	l.mu.Lock()
	var oldest net.Conn
	var since time.Time
	for c, t := range l.idle {
		if oldest == nil || t.Before(since) {
			oldest, since = c, t
		}
	}
	delete(l.idle, oldest)
	l.mu.Unlock()
	if oldest == nil {
		return false
	}
	_ = oldest.Close()
	return true
}

// limitedConn gives its slot back when it is closed, once.
type limitedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}
