package redistest

import (
	"bytes"
	"errors"
	"net"
	"sync"
	"time"
)

// Proxy is a fault-injecting TCP proxy that tests put between go-redis and a
// real redis-server. Pausing or killing the server (Server.Pause, Server.Stop)
// cannot prove the hardest case for a retrying client: a command that ran on
// Redis whose reply never came back. The proxy can: it forwards a command,
// waits for Redis to start answering, and throws the answer away. It can also
// hang, refuse or reset connections without touching the server, so one
// server can stand behind several jobd replicas that each get their own
// network faults.
//
// All methods are safe for concurrent use. Each connection costs two
// goroutines and two 32 KiB buffers; nothing polls.
type Proxy struct {
	// Addr is the host:port clients dial instead of the server's.
	Addr string

	target string
	ln     net.Listener
	wg     sync.WaitGroup // the accept loop and every connection goroutine

	mu       sync.Mutex
	cond     *sync.Cond // broadcast when a stall lifts or a connection closes
	closed   bool
	stalled  bool
	refusing bool
	conns    map[*proxyConn]struct{}

	dropMatch []byte // requests containing this (lower-cased) are armed for a drop
	dropLeft  int    // how many more requests to arm
	dropGen   int    // bumped by DropReplies, so a stale arm is not given back to a new one
	dropped   int    // replies really dropped
}

// proxyConn is one client connection and its server connection.
type proxyConn struct {
	p              *Proxy
	client, server net.Conn
	lower          []byte // scratch for a lower-cased request, used only when armed

	// Guarded by p.mu.
	closed   bool
	dropNext bool // the next server bytes answer an armed request: drop them
	dropGen  int  // p.dropGen when dropNext was set
}

// proxyBufSize is the read chunk size in each direction; it matches
// go-redis's default buffer so a whole pipeline is usually one chunk.
const proxyBufSize = 32 << 10

// proxyDialTimeout bounds the dial to the target for each new connection.
const proxyDialTimeout = 5 * time.Second

// NewProxy starts a proxy on a free 127.0.0.1 port forwarding to target
// (host:port), and registers its Close with tb.Cleanup so a test cannot leak
// it.
func NewProxy(tb TB, target string) *Proxy {
	tb.Helper()
	p, err := StartProxy(target)
	if err != nil {
		tb.Fatalf("redistest: %v", err)
	}
	tb.Cleanup(p.Close)
	return p
}

// StartProxy is NewProxy without a TB, for a TestMain or a chaos harness that
// manages lifetimes itself; the caller must Close it.
func StartProxy(target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{
		Addr:   ln.Addr().String(),
		target: target,
		ln:     ln,
		conns:  make(map[*proxyConn]struct{}),
	}
	p.cond = sync.NewCond(&p.mu)
	p.wg.Add(1)
	go p.acceptLoop()
	return p, nil
}

// URL is the redis:// URL of the proxy, database 0, so a client configured
// from a URL can be pointed at the proxy instead of the server.
func (p *Proxy) URL() string { return "redis://" + p.Addr + "/0" }

// Close stops the listener, closes every connection and waits for all the
// proxy's goroutines to end, so tests do not leak goroutines or sockets. It is
// safe to call more than once.
func (p *Proxy) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		p.wg.Wait()
		return
	}
	p.closed = true
	p.mu.Unlock()
	_ = p.ln.Close()
	p.closeConns()
	p.wg.Wait()
}

// DropReplies arms the proxy to lose replies of commands that did run: the
// next n requests whose bytes contain match (a substring of one
// client-to-server read chunk, ignoring ASCII case because go-redis sends
// command names in lower case, "incr", while people write "INCR"; "" matches
// any request) are forwarded to Redis, the proxy waits until Redis's reply
// starts arriving (proof that the command ran), discards the reply and closes
// that client connection and its server connection. Other connections are
// untouched.
//
// A go-redis pipeline is one write, so it is one request: its replies are
// dropped together. The drop applies to the first server bytes read after
// the request was forwarded; since go-redis sends a request on a connection
// only after reading the previous reply in full, those bytes cannot belong to
// an earlier request (pub/sub connections are the exception and are not
// supported).
//
// Each call replaces the previous arming; n <= 0 disarms. If a matched
// request's connection ends before any reply arrives (the client gave up,
// or CutAll, Refuse or a server crash closed it), nothing was proven, so the
// arm is given back and the next matching request is armed instead: n counts
// replies really dropped, which Dropped reports.
func (p *Proxy) DropReplies(match string, n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.dropMatch = bytes.ToLower([]byte(match))
	p.dropLeft = max(n, 0)
	p.dropGen++
}

// Dropped reports how many replies were dropped so far, so tests can assert
// that the fault really happened rather than pass vacuously.
func (p *Proxy) Dropped() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.dropped
}

// Stall holds all traffic in both directions, on existing and new
// connections, without closing anything: a hung network, where only the
// client's own timeouts can end a command. Each direction keeps at most the
// one chunk it had already read; the rest waits in the kernel's socket
// buffers.
func (p *Proxy) Stall() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stalled = true
}

// Unstall delivers what Stall held (to connections still open) and resumes
// forwarding, like a network that comes back.
func (p *Proxy) Unstall() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stalled = false
	p.cond.Broadcast()
}

// Refuse closes every open connection and closes new ones as soon as they
// are accepted: a partition in which the client fails fast rather than hangs.
// Accept undoes it.
func (p *Proxy) Refuse() {
	p.mu.Lock()
	p.refusing = true
	p.mu.Unlock()
	p.closeConns()
}

// Accept undoes Refuse: new connections are forwarded again, so a test can
// check that the client recovers once the partition heals.
func (p *Proxy) Accept() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.refusing = false
}

// CutAll closes every open connection once (a reset, such as a failover or
// a NAT timeout) without refusing new ones, so a test can check that pooled
// connections are redialled.
func (p *Proxy) CutAll() { p.closeConns() }

// closeConns closes every open connection.
func (p *Proxy) closeConns() {
	p.mu.Lock()
	cs := make([]*proxyConn, 0, len(p.conns))
	for c := range p.conns {
		cs = append(cs, c)
	}
	p.mu.Unlock()
	for _, c := range cs {
		c.close()
	}
}

func (p *Proxy) acceptLoop() {
	defer p.wg.Done()
	for {
		client, err := p.ln.Accept()
		if err != nil {
			p.mu.Lock()
			closed := p.closed
			p.mu.Unlock()
			if closed || errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(10 * time.Millisecond) // e.g. out of file descriptors
			continue
		}
		p.mu.Lock()
		refuse := p.closed || p.refusing
		p.mu.Unlock()
		if refuse {
			_ = client.Close()
			continue
		}
		p.wg.Add(1) // the loop holds a count, so this never races Close's Wait
		go p.serve(client)
	}
}

// serve dials the target for one accepted client and copies both ways.
func (p *Proxy) serve(client net.Conn) {
	defer p.wg.Done()
	server, err := net.DialTimeout("tcp", p.target, proxyDialTimeout)
	if err != nil {
		_ = client.Close()
		return
	}
	c := &proxyConn{p: p, client: client, server: server}
	p.mu.Lock()
	if p.closed || p.refusing {
		p.mu.Unlock()
		_ = client.Close()
		_ = server.Close()
		return
	}
	p.conns[c] = struct{}{}
	p.wg.Add(1)
	p.mu.Unlock()
	go c.serverToClient()
	c.clientToServer()
}

// clientToServer forwards requests, arming a drop on a matching one.
func (c *proxyConn) clientToServer() {
	p := c.p
	defer c.close()
	buf := make([]byte, proxyBufSize)
	for {
		n, err := c.client.Read(buf)
		if n > 0 {
			chunk := buf[:n]
			p.mu.Lock()
			if !c.waitLocked() {
				p.mu.Unlock()
				return
			}
			armed := p.dropLeft > 0 && c.contains(chunk, p.dropMatch)
			if armed {
				// Set before the write, so the reply cannot be read first.
				p.dropLeft--
				c.dropNext = true
				c.dropGen = p.dropGen
			}
			p.mu.Unlock()
			if _, werr := c.server.Write(chunk); werr != nil {
				return // close gives the arm back
			}
		}
		if err != nil {
			return
		}
	}
}

// serverToClient forwards replies, or drops the reply of an armed request
// and closes the connection.
func (c *proxyConn) serverToClient() {
	p := c.p
	defer p.wg.Done()
	defer c.close()
	buf := make([]byte, proxyBufSize)
	for {
		n, err := c.server.Read(buf)
		if n > 0 {
			p.mu.Lock()
			if !c.waitLocked() {
				p.mu.Unlock()
				return
			}
			if c.dropNext {
				c.dropNext = false
				p.dropped++
				p.mu.Unlock()
				return // the deferred close discards the reply
			}
			p.mu.Unlock()
			if _, werr := c.client.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// contains reports whether chunk contains the lower-case match, ignoring
// ASCII case.
func (c *proxyConn) contains(chunk, match []byte) bool {
	if len(match) == 0 {
		return true
	}
	if cap(c.lower) < len(chunk) {
		c.lower = make([]byte, len(chunk))
	}
	lower := c.lower[:len(chunk)]
	for i, b := range chunk {
		if 'A' <= b && b <= 'Z' {
			b += 'a' - 'A'
		}
		lower[i] = b
	}
	return bytes.Contains(lower, match)
}

// waitLocked blocks while the proxy is stalled and reports whether the
// connection is still open. p.mu must be held.
func (c *proxyConn) waitLocked() bool {
	for c.p.stalled && !c.closed {
		c.p.cond.Wait()
	}
	return !c.closed
}

// close closes both sides once, wakes a stalled copier of this connection,
// and gives back an arm whose reply never came.
func (c *proxyConn) close() {
	p := c.p
	p.mu.Lock()
	if c.closed {
		p.mu.Unlock()
		return
	}
	c.closed = true
	delete(p.conns, c)
	if c.dropNext {
		c.dropNext = false
		if c.dropGen == p.dropGen {
			p.dropLeft++
		}
	}
	p.cond.Broadcast()
	p.mu.Unlock()
	_ = c.client.Close()
	_ = c.server.Close()
}
