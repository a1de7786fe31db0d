package lockrun_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/jobd/jobd/internal/lockrun"
	"github.com/jobd/jobd/internal/logging"
	"github.com/jobd/jobd/internal/mutex"
	"github.com/jobd/jobd/internal/redistest"
)

// TestReleaseFailed: when the release of the lock fails (here Redis
// refuses jobd's user the lock's keys while the command runs), the
// command's code is still returned, and one warning says which lock, its
// lease, about when Redis frees it, and why; never the lock's token.
func TestReleaseFailed(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	srv.AddUser(t, "jobd", "pw")
	admin := redis.NewClient(&redis.Options{Addr: srv.Addr})
	defer admin.Close()
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr, Username: "jobd", Password: "pw", ContextTimeoutEnabled: true})
	defer rdb.Close()
	mc := mutex.New(rdb, mutex.WithPrefix("lockrun-test"))
	defer mc.Close()

	const key = "db:日本"
	lockKey := "lockrun-test:lock:{" + key + "}"
	token := make(chan string, 1)
	go func() { // once the command runs under the lock, take the keys away
		for {
			if tok := admin.HGet(ctx, lockKey, "token").Val(); tok != "" {
				token <- tok
				admin.Do(ctx, "ACL", "SETUSER", "jobd", "resetkeys")
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()
	logs := &redistest.Buffer{}
	log := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{ReplaceAttr: logging.DurationsAsStrings}))
	code, err := lockrun.Run(ctx, mc, key, []string{"sh", "-c", "sleep 1; exit 4"},
		lockrun.WithTTL(20*time.Second), lockrun.WithLogger(log))
	if code != 4 || err != nil {
		t.Fatalf("Run: code %d, err %v; want the command's 4", code, err)
	}
	tok := <-token
	var warnings []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		var l map[string]any
		if err := json.Unmarshal([]byte(line), &l); err != nil {
			t.Fatalf("%q: %v", line, err)
		}
		if l["level"] == "WARN" {
			warnings = append(warnings, l)
		}
	}
	if strings.Contains(logs.String(), tok) {
		t.Errorf("the log shows the lock's token %s:\n%s", tok, logs.String())
	}
	if len(warnings) != 1 {
		t.Fatalf("%d warnings, want 1:\n%s", len(warnings), logs.String())
	}
	w := warnings[0]
	expires, _ := time.ParseDuration(w["expires_in"].(string))
	errText, _ := w["err"].(string)
	if w["msg"] != "lock release failed; Redis frees it when its lease ends" || w["lock"] != key || w["ttl"] != "20s" ||
		expires < 15*time.Second || expires > 20*time.Second || !strings.Contains(errText, "NOPERM") {
		t.Errorf("warning: %v", w)
	}
}
