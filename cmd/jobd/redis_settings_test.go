package main

import (
	"context"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jobd/jobd/internal/mutex"
	"github.com/jobd/jobd/internal/redistest"
)

// jobdEnv starts the binary with exactly args (no --redis or --prefix)
// and with the JOBD_ variables unset unless env sets them.
func jobdEnv(t *testing.T, env []string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(jobdBin, append([]string{"--log-format", "text"}, args...)...)
	cmd.Env = append(os.Environ(), "JOBD_REDIS_URL=", "JOBD_PREFIX=", "JOBD_CONFIG=")
	cmd.Env = append(cmd.Env, env...)
	cmd.Stdout, cmd.Stderr = &redistest.Buffer{}, &redistest.Buffer{}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_, _ = cmd.Process.Wait()
		}
	})
	return cmd
}

// waitWithin is wait with a shorter limit, for commands that must exit
// at once and, when broken, would run on.
func waitWithin(t *testing.T, cmd *exec.Cmd, d time.Duration) result {
	t.Helper()
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(d):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("jobd did not exit within %v: %s", d, cmd.Stderr)
	}
	return result{cmd.ProcessState.ExitCode(), cmd.Stdout.(*redistest.Buffer).String(), cmd.Stderr.(*redistest.Buffer).String()}
}

// TestRedisSettingsEveryCommand: with neither flag nor environment, every
// command that talks to Redis uses the redis: {url, prefix} of the file,
// here server A and prefix p1, while another server B exists; the flag
// and the environment still win over the file.
func TestRedisSettingsEveryCommand(t *testing.T) {
	a := redistest.Start(t)
	b := redistest.SharedURL(t)
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	cfgPath := filepath.Join(dir, "jobs.yaml")
	writeFile(t, cfgPath, "redis: {url: \""+a.URL()+"\", prefix: p1}\njobs:\n"+
		"  - name: tick\n    schedule: \"@every 1s\"\n    command: [\"sh\", \"-c\", \"echo ran >> "+out+"\"]\n"+
		"  - name: manual\n    schedule: \"@daily\"\n    suspend: true\n    command: [\"true\"]\n")
	broken := filepath.Join(dir, "broken.yaml")
	writeFile(t, broken, "redis: {url: \""+a.URL()+"\", prefix: p1}\njobs:\n  - name: x\n    schedule: \"* * *\"\n")

	daemon := jobdEnv(t, nil, "-c", cfgPath, "run", "--replica-id", "file-a")
	poll(t, 15*time.Second, "a run of tick", func() bool { return fileHas(out, "ran") })
	ctx := context.Background()
	_, rdbA := newMutexClient(t, a.URL())
	if n := rdbA.Exists(ctx, "p1:replica:file-a").Val(); n != 1 {
		t.Fatalf("the daemon's heartbeat is not p1:replica:file-a on A")
	}
	_, rdbB := newMutexClient(t, b)
	if n := rdbB.Exists(ctx, "p1:replica:file-a", "jobd:replica:file-a").Val(); n != 0 {
		t.Fatalf("the daemon wrote its heartbeat to B")
	}
	// A scheduled job's lock, held on A under p1.
	holder := mutex.New(rdbA, mutex.WithPrefix("p1"), mutex.WithOwner("scheduled-job"))
	t.Cleanup(func() { holder.Close() })
	if err := holder.NewMutex("shared", mutex.WithTTL(time.Minute)).Lock(ctxT(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}

	type test struct {
		name   string
		env    []string
		args   []string
		code   int
		stdout string
		stderr string
	}
	tests := []test{
		{"status", nil, []string{"-c", cfgPath, "status", "--json"}, 0, `"id": "file-a"`, ""},
		{"history", nil, []string{"-c", cfgPath, "history", "tick"}, 0, "succeeded", ""},
		{"trigger", nil, []string{"-c", cfgPath, "trigger", "manual", "--wait", "--timeout", "30s"}, 0, "", "succeeded"},
		{"lock held on A/p1", nil, []string{"-c", cfgPath, "lock", "shared", "--", "true"}, 75, "", "scheduled-job"},
		{"lock with JOBD_CONFIG", []string{"JOBD_CONFIG=" + cfgPath}, []string{"lock", "shared", "--", "true"}, 75, "", "scheduled-job"},
		{"environment wins over the file", []string{"JOBD_REDIS_URL=" + b, "JOBD_PREFIX=p1"}, []string{"-c", cfgPath, "lock", "shared", "--", "true"}, 0, "", ""},
		{"flag wins over the environment", []string{"JOBD_REDIS_URL=" + b}, []string{"--redis", a.URL(), "-c", cfgPath, "lock", "shared", "--", "true"}, 75, "", "scheduled-job"},
		{"prefix flag wins over the file", nil, []string{"--prefix", "p2", "-c", cfgPath, "lock", "shared", "--", "true"}, 0, "", ""},
		{"broken explicit file", nil, []string{"-c", broken, "lock", "shared", "--", "true"}, 1, "", "jobs[0].schedule: expected 5 or 6 fields"},
		{"missing explicit file", nil, []string{"-c", filepath.Join(dir, "none.yaml"), "lock", "shared", "--", "true"}, 1, "", "no such file"},
		{"broken explicit file, status", nil, []string{"-c", broken, "status"}, 1, "", "2 problem(s)"},
	}
	if _, err := os.Stat(defaultConfig); os.IsNotExist(err) {
		tests = append(tests, test{"missing default file is fine", []string{"JOBD_REDIS_URL=" + b}, []string{"lock", "shared", "--", "true"}, 0, "", ""})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := wait(t, jobdEnv(t, tt.env, tt.args...))
			if r.code != tt.code {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", r.code, tt.code, r.stdout, r.stderr)
			}
			if !strings.Contains(r.stdout, tt.stdout) || !strings.Contains(r.stderr, tt.stderr) {
				t.Errorf("stdout lacks %q or stderr lacks %q\nstdout: %s\nstderr: %s", tt.stdout, tt.stderr, r.stdout, r.stderr)
			}
		})
	}
	_ = daemon.Process.Signal(syscall.SIGTERM)
	if r := wait(t, daemon); r.code != 0 {
		t.Errorf("daemon: exit %d: %s", r.code, r.stderr)
	}
}

// TestRedisRefused: Redis refusing jobd's configuration (a database out
// of range, a missing permission, a wrong password) is exit 78 with
// Redis's own message and never the password, for every command; a
// closed port is still 69.
func TestRedisRefused(t *testing.T) {
	srv := redistest.Start(t)
	_, admin := newMutexClient(t, srv.URL())
	if err := admin.Do(context.Background(), "ACL", "SETUSER", "nokeys", "on", ">pw-nokeys-123", "~other:*", "&*", "+@all").Err(); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "jobs.yaml")
	writeFile(t, cfgPath, "jobs:\n  - name: a\n    schedule: \"@every 1s\"\n    command: [\"true\"]\n")
	closed := "redis://nokeys:pw-nokeys-123@127.0.0.1:" + strconv.Itoa(freePort(t)) + "/0"
	urls := []struct {
		name, url string
		code      int
		msg       string
	}{
		{"db out of range", "redis://" + srv.Addr + "/99", 78, "DB index"},
		{"missing permission", "redis://nokeys:pw-nokeys-123@" + srv.Addr + "/0", 78, "NOPERM"},
		{"wrong password", "redis://nokeys:wrong-pw-789@" + srv.Addr + "/0", 78, "WRONGPASS"},
		{"closed port", closed, 69, "redis unreachable at redis://nokeys:xxxxx@127.0.0.1:"},
	}
	commands := [][]string{
		{"lock", "k", "--", "true"},
		{"status"},
		{"history", "a"},
		{"trigger", "a"},
		{"run", "--replica-id", "refused"},
	}
	for _, u := range urls {
		for _, cmd := range commands {
			if cmd[0] == "run" && u.code == 69 {
				continue // the daemon waits for Redis: TestRunWaitsForRedis
			}
			t.Run(u.name+"/"+cmd[0], func(t *testing.T) {
				r := waitWithin(t, jobd(t, u.url, append([]string{"-c", cfgPath}, cmd...)...), 20*time.Second)
				if r.code != u.code {
					t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", r.code, u.code, r.stdout, r.stderr)
				}
				if !strings.Contains(r.stderr, u.msg) {
					t.Errorf("stderr lacks %q: %s", u.msg, r.stderr)
				}
				if u.code == 78 && !strings.Contains(r.stderr, "refused") {
					t.Errorf("stderr does not say Redis refused: %s", r.stderr)
				}
				for _, secret := range []string{"pw-nokeys-123", "wrong-pw-789"} {
					if strings.Contains(r.stdout+r.stderr, secret) {
						t.Errorf("output shows the password: %s", r.stderr)
					}
				}
			})
		}
	}
}

// TestRunWaitsForRedis: `jobd run` started while nothing listens on the
// Redis port stays up, not ready, and tells systemd why; once Redis
// starts on that port it runs its jobs and turns ready by itself.
func TestRunWaitsForRedis(t *testing.T) {
	srv := redistest.Start(t)
	url := srv.URL()
	srv.Stop()
	dir := t.TempDir()
	sock := filepath.Join(dir, "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	notes := make(chan string, 100)
	go func() {
		buf := make([]byte, 512)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				close(notes)
				return
			}
			for _, line := range strings.Split(string(buf[:n]), "\n") {
				notes <- line
			}
		}
	}()
	out := filepath.Join(dir, "out")
	cfgPath := filepath.Join(dir, "jobs.yaml")
	writeFile(t, cfgPath, "jobs:\n  - name: a\n    schedule: \"@every 1s\"\n    command: [\"sh\", \"-c\", \"echo ran >> "+out+"\"]\n")
	addr := freeAddr(t)
	cmd := exec.Command(jobdBin, "--redis", url, "--prefix", prefix(t), "--log-format", "text", "-c", cfgPath,
		"run", "--replica-id", "w1", "--http", addr)
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+sock)
	stderr := &redistest.Buffer{}
	cmd.Stdout, cmd.Stderr = &redistest.Buffer{}, stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() { _ = cmd.Process.Kill(); <-exited })
	seen := map[string]bool{}
	note := func(prefix string) bool {
		for {
			select {
			case n := <-notes:
				seen[n] = true
			default:
				for n := range seen {
					if strings.HasPrefix(n, prefix) {
						return true
					}
				}
				return false
			}
		}
	}

	poll(t, 10*time.Second, "the HTTP server", func() bool { return readyz(addr) != 0 })
	for i := 0; i < 15; i++ { // 3s without Redis
		select {
		case <-exited:
			t.Fatalf("jobd exited %d without Redis: %s", cmd.ProcessState.ExitCode(), stderr)
		case <-time.After(200 * time.Millisecond):
		}
		if code := readyz(addr); code != http.StatusServiceUnavailable {
			t.Fatalf("/readyz %d without Redis, want 503", code)
		}
	}
	want := "STATUS=waiting for Redis at " + url + ": "
	poll(t, 5*time.Second, want, func() bool { return note(want) })
	if !note("READY=1") {
		t.Error("no READY=1: systemd would kill a daemon that waits for Redis")
	}
	if n := strings.Count(stderr.String(), "redis unreachable at start"); n != 1 {
		t.Errorf("%d start messages, want 1: %s", n, stderr)
	}

	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	poll(t, 20*time.Second, "a run once Redis is up", func() bool { return fileHas(out, "ran") })
	poll(t, 10*time.Second, "/readyz 200", func() bool { return readyz(addr) == http.StatusOK })
	poll(t, 10*time.Second, "STATUS=running", func() bool { return note("STATUS=running: 1 instance") })
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(30 * time.Second):
		t.Fatal("jobd did not stop")
	}
	if code := cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("exit %d: %s", code, stderr)
	}
}

// readyz is /readyz's status code, 0 if nothing answers.
func readyz(addr string) int {
	c := http.Client{Timeout: 3 * time.Second}
	resp, err := c.Get("http://" + addr + "/readyz")
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestRunRefusedOnceRedisComesUp: a daemon waiting for Redis exits 78
// when Redis comes up and refuses it (here: a database out of range),
// since waiting longer would not help.
func TestRunRefusedOnceRedisComesUp(t *testing.T) {
	srv := redistest.Start(t)
	url := "redis://" + srv.Addr + "/99"
	srv.Stop()
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "jobs.yaml")
	writeFile(t, cfgPath, "jobs:\n  - name: a\n    schedule: \"@every 1s\"\n    command: [\"true\"]\n")
	cmd := jobd(t, url, "-c", cfgPath, "run", "--replica-id", "r1")
	stderr := cmd.Stderr.(*redistest.Buffer)
	poll(t, 10*time.Second, "the start message", func() bool { return strings.Contains(stderr.String(), "redis unreachable at start") })
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	r := waitWithin(t, cmd, 20*time.Second)
	if r.code != 78 || !strings.Contains(r.stderr, "DB index") {
		t.Fatalf("exit %d, want 78 with Redis's message: %s", r.code, r.stderr)
	}
}
