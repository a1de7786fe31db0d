package mutex_test

import (
	"context"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/jobd/jobd/internal/mutex"
	"github.com/jobd/jobd/internal/redistest"
)

func TestMain(m *testing.M) {
	if mode := os.Getenv("JOBD_MUTEX_HELPER"); mode != "" {
		os.Exit(helperMain(mode))
	}
	redistest.Main(m)
}

// newRedis returns a go-redis client on url, honouring context deadlines
// the way cmd/jobd configures it.
func newRedis(tb testing.TB, url string) *redis.Client {
	tb.Helper()
	opt, err := redis.ParseURL(url)
	if err != nil {
		tb.Fatal(err)
	}
	opt.ContextTimeoutEnabled = true
	opt.MaxRetries = -1 // a fault test wants to see each failure
	rdb := redis.NewClient(opt)
	tb.Cleanup(func() { rdb.Close() })
	return rdb
}

// newUniversal is newRedis that also takes a Redis Cluster in jobd's
// redis+cluster:// form (redistest.Cluster.URL).
func newUniversal(tb testing.TB, url string) redis.UniversalClient {
	tb.Helper()
	rdb, err := dial(url)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { rdb.Close() })
	return rdb
}

// dial is a client on url, a redis:// URL or a redis+cluster:// one, set
// up as cmd/jobd sets it up.
func dial(url string) (redis.UniversalClient, error) {
	if rest, ok := strings.CutPrefix(url, "redis+cluster://"); ok {
		opt, err := redis.ParseClusterURL("redis://" + rest)
		if err != nil {
			return nil, err
		}
		opt.ContextTimeoutEnabled = true
		opt.ClusterStateReloadInterval = time.Second
		return redis.NewClusterClient(opt), nil
	}
	opt, err := redis.ParseURL(url)
	if err != nil {
		return nil, err
	}
	opt.ContextTimeoutEnabled = true
	return redis.NewClient(opt), nil
}

// prefixes holds each test's prefix; runs numbers them.
var (
	prefixes sync.Map // testing.TB -> string
	runs     atomic.Int64
)

// prefix gives each test its own keys, also each repetition of it under
// go test -count=N (a repetition would otherwise meet the locks the one
// before left held).
func prefix(tb testing.TB) string {
	if p, ok := prefixes.Load(tb); ok {
		return p.(string)
	}
	p := "test:" + strings.NewReplacer("/", ":", " ", "_").Replace(tb.Name()) + ":" + strconv.FormatInt(runs.Add(1), 10)
	actual, _ := prefixes.LoadOrStore(tb, p)
	return actual.(string)
}

// newClient returns a mutex client on the shared server with the test's
// own prefix.
func newClient(tb testing.TB, opts ...mutex.ClientOption) (*mutex.Client, *redis.Client) {
	tb.Helper()
	rdb := newRedis(tb, redistest.SharedURL(tb))
	c := mutex.New(rdb, append([]mutex.ClientOption{mutex.WithPrefix(prefix(tb))}, opts...)...)
	tb.Cleanup(func() { c.Close() })
	return c, rdb
}

func ctxT(tb testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	tb.Cleanup(cancel)
	return ctx
}
