package redistest

import (
	"strings"
	"testing"
)

// TestMissingRedisFails: without redis-server on PATH, starting one is an
// error that says how to install it (tests then fail; they never skip).
func TestMissingRedisFails(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	_, err := StartServer()
	if err == nil || !strings.Contains(err.Error(), "apt-get install -y redis-server") {
		t.Fatalf("StartServer without redis-server: %v", err)
	}
}

// TestStopPauseRestart: the fault controls do what they say.
func TestStopPauseRestart(t *testing.T) {
	s := Start(t)
	if err := ping(s.Addr); err != nil {
		t.Fatal(err)
	}
	s.Pause()
	if err := ping(s.Addr); err == nil {
		t.Fatal("paused server answered")
	}
	s.Resume()
	if err := ping(s.Addr); err != nil {
		t.Fatalf("resumed: %v", err)
	}
	s.Stop()
	if err := ping(s.Addr); err == nil {
		t.Fatal("stopped server answered")
	}
	s.Restart(t)
	if err := ping(s.Addr); err != nil {
		t.Fatalf("restarted: %v", err)
	}
}
