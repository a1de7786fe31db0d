// Package redistest starts private redis-server processes for tests.
//
// Tests prove Redis behaviour against a real server, never a mock, so a
// missing redis-server is a test failure with install instructions, not a
// skip. Each Server can be stopped, restarted on the same port, or paused
// with SIGSTOP to simulate a hung Redis.
package redistest

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// InstallHint says how to get redis-server; tests print it when it is missing.
const InstallHint = "redis-server is not installed: run `sudo apt-get install -y redis-server` (Debian/Ubuntu), or `make test`, which installs it"

// TB is the part of testing.TB that Start needs; TestMain passes a stand-in.
type TB interface {
	Helper()
	Fatalf(format string, args ...any)
	Cleanup(func())
}

// Server is one private redis-server on a loopback port.
type Server struct {
	Port int
	Addr string // host:port

	dir   string
	extra []string // redis-server arguments added by StartWith
	// sentinelConf, when set, makes this a sentinel: redis-server runs
	// on this config file (which the sentinel rewrites) with --sentinel.
	sentinelConf string
	mu           sync.Mutex
	cmd          *exec.Cmd
	out          bytes.Buffer
}

// Start launches a redis-server with persistence off and registers its
// shutdown with tb.Cleanup.
func Start(tb TB) *Server { return StartWith(tb) }

// StartWith is Start with extra redis-server arguments, which override the
// defaults (for example "--appendonly", "yes", "--appendfsync", "always":
// the data directory survives Stop and Restart, so such a server keeps its
// data across a crash).
func StartWith(tb TB, args ...string) *Server {
	tb.Helper()
	s, err := StartServer(args...)
	if err != nil {
		tb.Fatalf("redistest: %v", err)
	}
	tb.Cleanup(s.Close)
	return s
}

// StartServer is StartWith without a testing.TB; the caller must Close it.
func StartServer(args ...string) (*Server, error) {
	if _, err := exec.LookPath("redis-server"); err != nil {
		return nil, errors.New(InstallHint)
	}
	dir, err := os.MkdirTemp("", "jobd-redistest-")
	if err != nil {
		return nil, err
	}
	return startOnFreePort(dir, func(port int) *Server {
		return &Server{Port: port, Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), dir: dir, extra: args}
	})
}

// startOnFreePort starts the server newServer makes for a free port,
// trying another port up to five times (another process may take a port
// between the check and the bind); on failure it removes dir.
func startOnFreePort(dir string, newServer func(port int) *Server) (*Server, error) {
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		s := newServer(port)
		if s == nil {
			return nil, errors.New("redistest: cannot set up the server's files")
		}
		if lastErr = s.start(); lastErr == nil {
			return s, nil
		}
	}
	os.RemoveAll(dir)
	return nil, lastErr
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func (s *Server) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.out.Reset()
	cmd := exec.Command("redis-server", s.args()...)
	cmd.Stdout = &s.out
	cmd.Stderr = &s.out
	// Own process group, so a test's signals never reach the server.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start redis-server: %w", err)
	}
	s.cmd = cmd
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if ping(s.Addr) == nil {
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	s.cmd = nil
	return fmt.Errorf("redis-server on port %d did not answer PING within 5s: %s", s.Port, s.out.String())
}

// args are redis-server's arguments: a sentinel's config file, or a data
// server's defaults followed by the extra arguments.
func (s *Server) args() []string {
	if s.sentinelConf != "" {
		return []string{s.sentinelConf, "--sentinel", "--port", strconv.Itoa(s.Port)}
	}
	return append([]string{
		"--port", strconv.Itoa(s.Port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", s.dir,
		"--unixsocket", s.Socket(), "--unixsocketperm", "700",
		"--daemonize", "no", "--protected-mode", "no"}, s.extra...)
}

// ping sends an inline PING and expects +PONG.
func ping(addr string) error {
	c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(500 * time.Millisecond))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	buf := make([]byte, 7)
	if _, err := c.Read(buf); err != nil {
		return err
	}
	if !bytes.HasPrefix(buf, []byte("+PONG")) {
		return fmt.Errorf("unexpected reply %q", buf)
	}
	return nil
}

// AddUser creates the ACL user name, with password, allowed every key,
// channel and command (tests that refuse it something change it after).
// The server forgets the user when it restarts.
func (s *Server) AddUser(tb TB, name, password string) {
	tb.Helper()
	if _, err := command(s.Addr, "ACL", "SETUSER", name, "on", ">"+password, "~*", "&*", "+@all"); err != nil {
		tb.Fatalf("redistest: ACL SETUSER %s: %v", name, err)
	}
}

// Dir is the server's data directory (its AOF and RDB files), which a
// test may empty to make a restart lose the data.
func (s *Server) Dir() string { return s.dir }

// Socket is the server's unix socket path.
func (s *Server) Socket() string { return s.dir + "/redis-" + strconv.Itoa(s.Port) + ".sock" }

// URL is the redis:// URL of the server, database 0.
func (s *Server) URL() string { return "redis://" + s.Addr + "/0" }

// Stop kills the server (SIGKILL, like a crash); data is lost unless the
// server was started with persistence (StartWith).
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGCONT) // a paused server must die too
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
	s.cmd = nil
}

// Restart stops the server and starts a fresh one on the same port.
func (s *Server) Restart(tb TB) {
	tb.Helper()
	s.Stop()
	if err := s.Start(); err != nil {
		tb.Fatalf("redistest: restart: %v", err)
	}
}

// Start starts a stopped server again on the same port.
func (s *Server) Start() error {
	var err error
	for i := 0; i < 50; i++ { // the port may linger briefly after a kill
		if err = s.start(); err == nil {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return err
}

// Pause freezes the server with SIGSTOP: connections stay open, nothing answers.
func (s *Server) Pause() { s.signal(syscall.SIGSTOP) }

// Resume undoes Pause.
func (s *Server) Resume() { s.signal(syscall.SIGCONT) }

func (s *Server) signal(sig syscall.Signal) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		_ = s.cmd.Process.Signal(sig)
	}
}

// Close stops the server and removes its directory.
func (s *Server) Close() {
	s.Stop()
	os.RemoveAll(s.dir)
}

// Main is for TestMain: it starts one shared server, exports its URL in
// JOBD_TEST_REDIS_URL (so re-executed helper processes find it), runs the
// tests and exits. A missing redis-server fails the package.
func Main(m *testing.M) {
	if os.Getenv("JOBD_TEST_REDIS_URL") != "" { // a helper process re-executed by a test
		os.Exit(m.Run())
	}
	s, err := StartServer()
	if err != nil {
		fmt.Fprintln(os.Stderr, "FAIL:", err)
		os.Exit(1)
	}
	os.Setenv("JOBD_TEST_REDIS_URL", s.URL())
	code := m.Run()
	s.Close()
	os.Exit(code)
}

// SharedURL is the URL of the server started by Main.
func SharedURL(tb TB) string {
	tb.Helper()
	u := os.Getenv("JOBD_TEST_REDIS_URL")
	if u == "" {
		tb.Fatalf("redistest: no shared server; call redistest.Main from TestMain")
	}
	return u
}
