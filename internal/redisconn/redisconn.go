// Package redisconn is where every jobd command, the daemon and the
// operator tools alike, decides which Redis it talks to and what a
// failure to talk to it means: the address and key prefix (flag or
// environment, then the schedule file, then the defaults), the client
// options, the checks that Redis answers and lets jobd do its work, and
// the two kinds of failure, refused (fix the configuration) and
// unreachable (wait for it). No message it builds shows the password.
package redisconn

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/jobd/jobd/internal/jobs"
	"github.com/jobd/jobd/internal/mutex"
)

// DefaultURL is the Redis used when nothing names one.
const DefaultURL = "redis://127.0.0.1:6379/0"

// PingTimeout bounds each check that Redis answers.
const PingTimeout = 5 * time.Second

// QuorumNodeTimeout bounds each master's part of a check of a quorum: a
// paused master (its connection open, nothing answering) costs a check
// this long, while the others make the majority.
const QuorumNodeTimeout = time.Second

// Kinds of failure; every *Error matches one of them with errors.Is.
var (
	// ErrRefused: Redis answered, and refused jobd's configuration (ACL
	// permissions, user or password, database number). Retrying does not
	// help.
	ErrRefused = errors.New("redisconn: redis refused")
	// ErrUnreachable: Redis did not answer (or failed otherwise); it may
	// come back.
	ErrUnreachable = errors.New("redisconn: redis unreachable")
)

// Target is the Redis a command works on (one server, a Sentinel-watched
// master, a Redis Cluster or a quorum of independent masters) and the
// key prefix.
type Target struct {
	URL    string // as given: print the Target, never the URL; "" with Redis.Sentinel, Cluster or Quorum
	Prefix string
	// Redis is the schedule file's redis: section: its sentinel, cluster
	// or quorum form (used when no URL was given), credentials and
	// min_replicas_acked.
	Redis jobs.RedisConfig
}

// Resolve is the one rule for every command: each field of given (a flag
// or its environment variable) wins, then the schedule file's redis:
// section (cfg may be nil: no file), then DefaultURL and
// mutex.DefaultPrefix. An empty value counts as unset.
func Resolve(given Target, cfg *jobs.Config) Target {
	var file jobs.RedisConfig
	if cfg != nil {
		file = cfg.Redis
	}
	t := Target{URL: given.URL, Prefix: cmp.Or(given.Prefix, file.Prefix, mutex.DefaultPrefix), Redis: file}
	if t.URL == "" && file.Sentinel == nil && file.Cluster == nil && file.Quorum == nil {
		t.URL = cmp.Or(file.URL, DefaultURL)
	}
	if t.URL != "" {
		// a URL given as a flag wins over the file's sentinel:, cluster:
		// or quorum:
		t.Redis.Sentinel, t.Redis.Cluster, t.Redis.Quorum = nil, nil, nil
	}
	return t
}

// String is the URL without its password, or the Sentinel, cluster or
// quorum setup, for messages.
func (t Target) String() string {
	if s := t.Redis.Sentinel; s != nil {
		return fmt.Sprintf("sentinel master %q via %s", s.Master, strings.Join(s.Addrs, ","))
	}
	if c := t.Redis.Cluster; c != nil {
		return "cluster via " + strings.Join(c.Addrs, ",")
	}
	if q := t.Redis.Quorum; q != nil {
		return fmt.Sprintf("quorum of %d masters: %s", len(q.Addrs), strings.Join(q.Addrs, ","))
	}
	if u, err := url.Parse(t.URL); err == nil {
		if q := u.Query(); q.Has("password") { // the failover URL's data password
			q.Set("password", "xxxxx")
			u.RawQuery = q.Encode()
		}
		return u.Redacted()
	}
	return userinfo.ReplaceAllString(t.URL, "//xxxxx@")
}

var userinfo = regexp.MustCompile(`//[^/@]*@`)

// Scrub removes t's URL and password from msg.
func (t Target) Scrub(msg string) string {
	if t.URL != "" {
		msg = strings.ReplaceAll(msg, t.URL, t.String())
	}
	if u, err := url.Parse(t.URL); err == nil {
		if p, ok := u.User.Password(); ok && p != "" {
			msg = strings.ReplaceAll(msg, p, "xxxxx")
		}
		if p := u.Query().Get("password"); p != "" {
			msg = strings.ReplaceAll(msg, p, "xxxxx")
		}
	}
	if p, _ := t.Redis.ReadPassword(); p != "" {
		msg = strings.ReplaceAll(msg, p, "xxxxx")
	}
	return msg
}

// ErrQuorumOpen is Open's error for a quorum: its masters are separate
// clients, which OpenNodes returns, and a single client would silently
// talk to one master only.
var ErrQuorumOpen = errors.New("redisconn: redis.quorum has one client per master: open it with OpenNodes")

// Open returns a client for t that has not talked to Redis yet: a
// failover client for a Sentinel setup (the file's sentinel:, or a URL
// with master_name, go-redis's ParseFailoverURL form), a cluster client
// for a Redis Cluster (the file's cluster:, or a redis+cluster:// URL,
// go-redis's ParseClusterURL form), a plain one otherwise. Its calls are
// bounded by their contexts' deadlines, which keep-alive relies on. A
// bad URL is an error whose text never shows the password. A quorum has
// no single client: Open returns ErrQuorumOpen, and OpenNodes its
// masters' clients.
func (t Target) Open() (redis.UniversalClient, error) {
	o, err := t.options()
	switch {
	case err != nil:
		return nil, err
	case o.quorum != nil:
		return nil, ErrQuorumOpen // callers name t
	}
	return o.open(), nil
}

// open is the one client of o, which is not a quorum's.
func (o clientOptions) open() redis.UniversalClient {
	switch {
	case o.failover != nil:
		return redis.NewFailoverClient(o.failover)
	case o.cluster != nil:
		return redis.NewClusterClient(o.cluster)
	}
	return redis.NewClient(o.plain)
}

// OpenNodes returns the clients that together are t, none of which has
// talked to Redis yet: for a quorum, one plain client per master, in the
// order of redis.quorum.addrs, with the file's credentials, database and
// TLS, and Open's settings of a plain client; for any other topology,
// the one client Open returns. The caller closes each. Ping, Check and
// Watch take this slice.
func (t Target) OpenNodes() ([]redis.UniversalClient, error) {
	o, err := t.options()
	if err != nil {
		return nil, err
	}
	if o.quorum == nil {
		return []redis.UniversalClient{o.open()}, nil
	}
	nodes := make([]redis.UniversalClient, len(o.quorum))
	for i, p := range o.quorum {
		nodes[i] = redis.NewClient(p)
	}
	return nodes, nil
}

// Ping checks within PingTimeout that Redis answers: the one node, or a
// majority of nodes (a quorum's masters, from OpenNodes), asked in
// parallel, since a quorum works while a majority answers. A failure is
// an *Error; with several nodes its Err is a *MajorityError, and it is
// ErrRefused only if a majority refused.
func (t Target) Ping(ctx context.Context, nodes []redis.UniversalClient) error {
	return t.majority(ctx, nodes, ping)
}

// ping is Ping on one node, its error not yet classified.
func ping(ctx context.Context, rdb redis.UniversalClient) error {
	pctx, cancel := context.WithTimeout(ctx, PingTimeout)
	defer cancel()
	return rdb.Ping(pctx).Err()
}

// Check pings Redis and then probes, without changing anything, that
// jobd's user may do what the daemon does under t's prefix: read and
// write keys, run scripts, publish, read the time; on the one node, or
// on a majority of nodes, in parallel. A failure is an *Error, as Ping's.
func (t Target) Check(ctx context.Context, nodes []redis.UniversalClient) error {
	if err := t.majority(ctx, nodes, t.check); err != nil {
		return err
	}
	return t.distinct(ctx, nodes)
}

// distinct refuses (ErrRefused) a quorum two of whose addresses reach the
// same server ("127.0.0.1:6379" and "localhost:6379"), known by its
// run_id: that server would count twice toward the majority, and its
// loss would cost two votes. Masters that do not answer are not compared.
func (t Target) distinct(ctx context.Context, nodes []redis.UniversalClient) error {
	if len(nodes) < 2 {
		return nil
	}
	ids := make([]string, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Go(func() {
			nctx, cancel := context.WithTimeout(ctx, QuorumNodeTimeout)
			defer cancel()
			if info, err := n.Info(nctx, "server").Result(); err == nil {
				for _, line := range strings.Split(info, "\n") {
					if id, ok := strings.CutPrefix(strings.TrimSpace(line), "run_id:"); ok {
						ids[i] = id
					}
				}
			}
		})
	}
	wg.Wait()
	for i := range ids {
		for j := range i {
			if ids[i] != "" && ids[i] == ids[j] {
				return &Error{Kind: ErrRefused, Target: t, Err: fmt.Errorf("%w: %s and %s are the same redis-server (run_id %s): each master must be a server of its own, counted once toward the majority",
					ErrSameServer, nodeAddr(nodes, j), nodeAddr(nodes, i), ids[i])}
			}
		}
	}
	return nil
}

// ErrSameServer: two addresses of a quorum reach one redis-server.
var ErrSameServer = errors.New("redisconn: two quorum addresses reach the same server")

// check is Check on one node, its error not yet classified.
func (t Target) check(ctx context.Context, rdb redis.UniversalClient) error {
	if err := ping(ctx, rdb); err != nil {
		return err
	}
	pctx, cancel := context.WithTimeout(ctx, PingTimeout)
	defer cancel()
	probe := t.Prefix + ":acl-probe" // never written: PEXPIRE of a missing key does nothing
	pipe := rdb.Pipeline()
	pipe.Time(pctx)
	pipe.Exists(pctx, probe)
	pipe.PExpire(pctx, probe, time.Second)
	pipe.Eval(pctx, "return 1", []string{probe})
	pipe.Publish(pctx, probe, "")
	_, err := pipe.Exec(pctx)
	return err
}

// majority runs f on every node in parallel. It succeeds when a
// majority of nodes succeed: with one node, when that one does, and its
// failure is classified by Fail as it is. With more, once a majority
// succeeded it cancels the other calls, so that a master that is down
// costs no dial retries (one that hangs still holds the answer until its
// deadline: go-redis does not abort a blocked read on cancellation). A
// failure names how many succeeded out of how many and each node that
// failed, and is of kind ErrRefused if a majority refused jobd (see
// IsRefusal), ErrUnreachable otherwise. That is what a quorum needs: a
// lock or a claim is taken on a majority, so any minority may be down.
func (t Target) majority(ctx context.Context, nodes []redis.UniversalClient, f func(context.Context, redis.UniversalClient) error) error {
	if len(nodes) == 1 {
		return t.Fail(f(ctx, nodes[0]))
	}
	return t.majorityErr(nodes, eachNode(ctx, nodes, f, len(nodes)/2+1))
}

// eachNode runs f on every node in parallel and returns its errors, in
// the order of nodes, once every call has returned, or once enough calls
// succeeded: the others are then cancelled (their errors say so), and
// waited for.
func eachNode(ctx context.Context, nodes []redis.UniversalClient, f func(context.Context, redis.UniversalClient) error, enough int) []error {
	ctx, cancel := context.WithCancel(ctx)
	type result struct {
		i   int
		err error
	}
	results := make(chan result, len(nodes)) // never blocks a sender
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			nctx := ctx
			if len(nodes) > 1 {
				// A canceled call to a paused master does not return
				// until its deadline: keep that short.
				var cancel context.CancelFunc
				nctx, cancel = context.WithTimeout(ctx, QuorumNodeTimeout)
				defer cancel()
			}
			results <- result{i, f(nctx, n)}
		}()
	}
	errs := make([]error, len(nodes))
	for i := range errs {
		errs[i] = context.Canceled // until its result arrives
	}
	for ok, left := 0, len(nodes); ok < enough && left > 0; left-- {
		r := <-results
		errs[r.i] = r.err
		if r.err == nil {
			ok++
		}
	}
	cancel()
	wg.Wait()
	return errs
}

// majorityErr is nil when a majority of errs, one per node, are nil, or
// an *Error that says how many nodes answered and why the others did
// not.
func (t Target) majorityErr(nodes []redis.UniversalClient, errs []error) error {
	var failed []error
	refused := 0
	for i, err := range errs {
		if err == nil {
			continue
		}
		if IsRefusal(err) {
			refused++
		}
		failed = append(failed, fmt.Errorf("%s: %w", nodeAddr(nodes, i), err))
	}
	n, need := len(nodes), len(nodes)/2+1
	if n-len(failed) >= need {
		return nil
	}
	kind := ErrUnreachable
	if refused >= need {
		kind = ErrRefused
	}
	return &Error{Kind: kind, Target: t, Err: &MajorityError{Answered: n - len(failed), Nodes: n, Failed: failed}}
}

// MajorityError is why fewer than a majority of nodes answered: the
// Err of an *Error from Ping, Check or Watch on several nodes.
type MajorityError struct {
	Answered, Nodes int
	Failed          []error // one per node that failed, each prefixed with its host:port
}

// Error says how many answered, how many must, and each failure.
func (e *MajorityError) Error() string {
	msgs := make([]string, len(e.Failed))
	for i, err := range e.Failed {
		msgs[i] = err.Error()
	}
	return fmt.Sprintf("%d of %d masters answered, a majority is %d: %s", e.Answered, e.Nodes, e.Nodes/2+1, strings.Join(msgs, "; "))
}

// Unwrap lets errors.Is and errors.As look into each node's failure.
func (e *MajorityError) Unwrap() []error { return e.Failed }

// nodeAddr names nodes[i] in a message: its host:port (never its
// password), or its position.
func nodeAddr(nodes []redis.UniversalClient, i int) string {
	if c, ok := nodes[i].(*redis.Client); ok {
		return c.Options().Addr
	}
	return fmt.Sprintf("node %d", i+1)
}

// Watch checks Redis (nodes, as Ping and Check take them) in a
// goroutine, every second while it fails and every 5s while it answers,
// and calls report with each result, until stop is called (stop waits
// for it). startErr is the Check made at start. Until a Check has
// passed, the later ones are full Checks, and a refusal ends the watch:
// it is sent on refused, since waiting will not fix it. Afterwards a
// Ping is enough, and refusals are only reported.
func (t Target) Watch(ctx context.Context, nodes []redis.UniversalClient, startErr error, log *slog.Logger, report func(error)) (refused <-chan error, stop func()) {
	ch, done := make(chan error, 1), make(chan struct{})
	ctx, cancel := context.WithCancel(ctx)
	go func() {
		defer close(done)
		lastErr, checked := startErr, startErr == nil
		for {
			d := 5 * time.Second
			if lastErr != nil {
				d = time.Second
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(d):
			}
			var err error
			if checked {
				err = t.Ping(ctx, nodes)
			} else {
				err = t.Check(ctx, nodes)
			}
			switch {
			case ctx.Err() != nil:
				return
			case !checked && errors.Is(err, ErrRefused):
				ch <- err
				return
			case !checked && err == nil:
				checked = true
				log.Info("redis answers; claiming starts", "redis", t.String())
			}
			lastErr = err
			report(err)
		}
	}()
	return ch, func() { cancel(); <-done }
}

// Error is a failed call to Redis, classified, with a message safe to
// print.
type Error struct {
	Kind   error // ErrRefused or ErrUnreachable
	Target Target
	Err    error // as Redis or go-redis returned it: may show the password
}

// Error says whether Redis refused or did not answer, where, and why.
func (e *Error) Error() string {
	if e.Kind == ErrRefused {
		return fmt.Sprintf("redis at %s refused: %s (check the ACL user, its password and the database number)", e.Target, e.Target.Scrub(e.Err.Error()))
	}
	return fmt.Sprintf("redis unreachable at %s: %s%s", e.Target, e.Target.Scrub(e.Err.Error()), e.tlsHint())
}

// tlsHint explains the usual reason a rediss:// target times out or
// hangs up: the port speaks plain text, so the TLS handshake never ends.
func (e *Error) tlsHint() string {
	if !strings.HasPrefix(e.Target.URL, "rediss://") {
		return ""
	}
	msg := e.Err.Error()
	if errors.Is(e.Err, context.DeadlineExceeded) || strings.Contains(msg, "EOF") || strings.Contains(msg, "tls:") ||
		strings.Contains(msg, "i/o timeout") {
		return " (the server did not complete a TLS handshake: is this a plain-text port? use redis:// for one)"
	}
	return ""
}

// Status is the error as one short line for systemd's STATUS=.
func (e *Error) Status() string {
	if e.Kind == ErrRefused {
		return "redis refused: " + e.Target.Scrub(e.Err.Error())
	}
	return fmt.Sprintf("waiting for Redis at %s: %s", e.Target, e.Target.Scrub(e.Err.Error()))
}

// Unwrap lets errors.Is match both the kind and the cause.
func (e *Error) Unwrap() []error { return []error{e.Kind, e.Err} }

// Fail classifies err, from a call to Redis at t: nil stays nil, a
// refusal (see IsRefusal) is an *Error of kind ErrRefused, anything else
// one of kind ErrUnreachable. An *Error is returned as is.
func (t Target) Fail(err error) error {
	var e *Error
	switch {
	case err == nil || errors.As(err, &e):
		return err
	case IsRefusal(err):
		return &Error{Kind: ErrRefused, Target: t, Err: err}
	}
	return &Error{Kind: ErrUnreachable, Target: t, Err: err}
}

// refusals are the replies by which Redis refuses jobd's configuration
// rather than fails: permissions, authentication, the database number.
var refusals = []string{"NOPERM ", "WRONGPASS ", "NOAUTH ", "ERR DB index", "ERR invalid DB index",
	"ERR AUTH ", "ERR Client sent AUTH", "ERR invalid password", "ERR SELECT is not allowed"}

// IsRefusal reports whether err is Redis refusing jobd's configuration.
// Errors are matched by their text as well, since the packages that call
// Redis do not all keep the reply's type when they add context.
func IsRefusal(err error) bool {
	if err == nil {
		return false
	}
	if redis.IsPermissionError(err) || redis.IsAuthError(err) {
		return true
	}
	msg := err.Error()
	for _, r := range refusals {
		if strings.HasPrefix(msg, r) || strings.Contains(msg, ": "+r) {
			return true
		}
	}
	return false
}

// SetLogger sends go-redis's own messages (dial retries and the like) to
// log at debug level; jobd logs what matters itself.
func SetLogger(log *slog.Logger) { redis.SetLogger(redisLogger{log}) }

type redisLogger struct{ log *slog.Logger }

// Printf logs one of go-redis's messages.
func (l redisLogger) Printf(ctx context.Context, format string, v ...any) {
	l.log.DebugContext(ctx, "redis: "+fmt.Sprintf(format, v...))
}
