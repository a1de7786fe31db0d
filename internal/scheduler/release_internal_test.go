package scheduler

import (
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/jobd/jobd/internal/jobs"
	"github.com/jobd/jobd/internal/logging"
	"github.com/jobd/jobd/internal/mutex"
	"github.com/jobd/jobd/internal/redistest"
)

// TestReleaseFailedWarning: a run's lock that cannot be released (here
// Redis refuses the replica's user the lock's keys) is one warning that
// says which lock, its lease, about when Redis frees it and why, never
// the token; after a lost lease, nothing is logged.
func TestReleaseFailedWarning(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	srv.AddUser(t, "jobd", "pw")
	admin := redis.NewClient(&redis.Options{Addr: srv.Addr})
	defer admin.Close()
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr, Username: "jobd", Password: "pw", ContextTimeoutEnabled: true})
	defer rdb.Close()
	mc := mutex.New(rdb, mutex.WithPrefix("release-test"))
	defer mc.Close()
	for _, lost := range []bool{false, true} {
		in := &jobs.Instance{Name: "backup[日本]", Lock: "db:日本" + map[bool]string{true: ":lost"}[lost], LockTTL: 12 * time.Second}
		m := mc.NewMutex(in.Lock, mutex.WithTTL(in.LockTTL))
		if err := admin.Do(ctx, "ACL", "SETUSER", "jobd", "~*").Err(); err != nil {
			t.Fatal(err)
		}
		if err := m.Lock(ctx); err != nil {
			t.Fatal(err)
		}
		token := admin.HGet(ctx, "release-test:lock:{"+in.Lock+"}", "token").Val()
		if err := admin.Do(ctx, "ACL", "SETUSER", "jobd", "resetkeys").Err(); err != nil {
			t.Fatal(err)
		}
		logs := &redistest.Buffer{}
		log := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{ReplaceAttr: logging.DurationsAsStrings}))
		(&runner{}).release(&Claim{Lease: m, in: in}, log, lost)
		if lost {
			if logs.String() != "" {
				t.Errorf("after a lost lease: %s", logs.String())
			}
			continue
		}
		if token == "" || strings.Contains(logs.String(), token) {
			t.Errorf("the token (%q) is in the log: %s", token, logs.String())
		}
		var w map[string]any
		if err := json.Unmarshal([]byte(logs.String()), &w); err != nil {
			t.Fatalf("not one JSON line: %q: %v", logs.String(), err)
		}
		expires, _ := time.ParseDuration(w["expires_in"].(string))
		errText, _ := w["err"].(string)
		if w["msg"] != "lock release failed; Redis frees it when its lease ends" || w["lock"] != in.Lock || w["ttl"] != "12s" ||
			expires < 8*time.Second || expires > 12*time.Second || !strings.Contains(errText, "NOPERM") {
			t.Errorf("warning: %v", w)
		}
	}
}
