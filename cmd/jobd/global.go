package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/urfave/cli/v2"

	"github.com/jobd/jobd/internal/jobs"
	"github.com/jobd/jobd/internal/mutex"
)

// Defaults of the global flags.
const (
	defaultRedisURL = "redis://127.0.0.1:6379/0"
	defaultPrefix   = mutex.DefaultPrefix
	defaultConfig   = "/etc/jobd/jobs.yaml"
	pingTimeout     = 5 * time.Second
)

func globalFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "redis", Value: defaultRedisURL, EnvVars: []string{"JOBD_REDIS_URL"},
			Usage: "Redis URL: redis://, rediss:// (TLS) or unix://, with user and password if needed"},
		&cli.StringFlag{Name: "config", Aliases: []string{"c"}, Value: defaultConfig, EnvVars: []string{"JOBD_CONFIG"},
			Usage: "the schedule file (see jobs.example.yaml)"},
		&cli.StringFlag{Name: "prefix", Value: defaultPrefix, EnvVars: []string{"JOBD_PREFIX"},
			Usage: "prefix of every Redis key jobd uses"},
		&cli.StringFlag{Name: "log-format", Value: "auto", EnvVars: []string{"JOBD_LOG_FORMAT"},
			Usage: "text, json, or auto (text on a terminal, JSON otherwise)"},
		&cli.StringFlag{Name: "log-level", Value: "info", EnvVars: []string{"JOBD_LOG_LEVEL"},
			Usage: "debug, info, warn or error"},
	}
}

// newLogger builds the slog logger from the global flags.
func newLogger(c *cli.Context) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.String("log-level"))); err != nil {
		return nil, exitf(exitUsage, "--log-level: %q is not debug, info, warn or error", c.String("log-level"))
	}
	w := c.App.ErrWriter
	opts := &slog.HandlerOptions{Level: level}
	var h slog.Handler
	switch f := c.String("log-format"); f {
	case "json":
		h = slog.NewJSONHandler(w, opts)
	case "text":
		h = slog.NewTextHandler(w, opts)
	case "auto":
		if isTerminal(w) {
			h = slog.NewTextHandler(w, opts)
		} else {
			h = slog.NewJSONHandler(w, opts)
		}
	default:
		return nil, exitf(exitUsage, "--log-format: %q is not text, json or auto", f)
	}
	log := slog.New(h)
	redis.SetLogger(redisLogger{log})
	return log, nil
}

// redisLogger sends go-redis's own messages (dial retries and the like) to
// slog at debug level; jobd logs what matters itself.
type redisLogger struct{ log *slog.Logger }

func (l redisLogger) Printf(ctx context.Context, format string, v ...any) {
	l.log.DebugContext(ctx, "redis: "+fmt.Sprintf(format, v...))
}

func isTerminal(w any) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// redisTarget is the Redis server and the key prefix a command works on.
type redisTarget struct {
	url    string // as given: print it with redactURL, never as is
	prefix string
}

// String is the URL without its password, for messages.
func (t redisTarget) String() string { return redactURL(t.url) }

// resolveRedis is the one place where every command (run, lock, status,
// history, trigger) decides which Redis and which key prefix it uses:
// --redis/--prefix, then JOBD_REDIS_URL/JOBD_PREFIX, then the schedule
// file's redis: {url, prefix} (cfg may be nil: no file), then the
// defaults. An empty value (JOBD_REDIS_URL=) counts as unset.
func resolveRedis(c *cli.Context, cfg *jobs.Config) redisTarget {
	var fileURL, filePrefix string
	if cfg != nil {
		fileURL, filePrefix = cfg.Redis.URL, cfg.Redis.Prefix
	}
	return redisTarget{
		url:    setting(c, "redis", fileURL, defaultRedisURL),
		prefix: setting(c, "prefix", filePrefix, defaultPrefix),
	}
}

// newRedisClient parses t's URL (a bad URL is exit 2) and returns a
// client that has not talked to Redis yet.
func newRedisClient(t redisTarget) (redis.UniversalClient, error) {
	opt, err := redis.ParseURL(t.url)
	if err != nil {
		return nil, exitf(exitUsage, "--redis %s: %s", t, scrub(err.Error(), t.url))
	}
	// Deadlines on contexts must bound every call: keep-alive relies on it.
	opt.ContextTimeoutEnabled = true
	return redis.NewClient(opt), nil
}

// connectRedis opens t and checks that Redis answers: exit 69 if it does
// not, 78 if it refuses jobd's credentials or database (see redisFailure).
func connectRedis(ctx context.Context, t redisTarget) (redis.UniversalClient, error) {
	rdb, err := newRedisClient(t)
	if err != nil {
		return nil, err
	}
	pctx, cancel := context.WithTimeout(ctx, pingTimeout)
	defer cancel()
	if err := rdb.Ping(pctx).Err(); err != nil {
		rdb.Close()
		return nil, redisFailure(t, err)
	}
	return rdb, nil
}

// Kinds of Redis failure; redisFailure wraps one of them.
var (
	// errRedisRefused: Redis answered, and refused jobd's configuration
	// (ACL permissions, user or password, database number). Retrying does
	// not help.
	errRedisRefused = errors.New("redis refused")
	// errRedisUnreachable: Redis did not answer (or failed otherwise); it
	// may come back.
	errRedisUnreachable = errors.New("redis unreachable")
)

// refusals are the replies by which Redis refuses jobd's configuration
// rather than fails: permissions, authentication, the database number.
var refusals = []string{"NOPERM ", "WRONGPASS ", "NOAUTH ", "ERR DB index", "ERR invalid DB index",
	"ERR AUTH ", "ERR Client sent AUTH", "ERR invalid password", "ERR SELECT is not allowed"}

// isRefusal reports whether err is Redis refusing jobd's configuration.
// Errors are matched by their text as well, since the packages that call
// Redis do not all keep the reply's type when they add context.
func isRefusal(err error) bool {
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

// redisError is a Redis failure with a message safe to print.
type redisError struct {
	kind error  // errRedisRefused or errRedisUnreachable
	msg  string // scrubbed of the password
	err  error
}

func (e *redisError) Error() string   { return e.msg }
func (e *redisError) Unwrap() []error { return []error{e.kind, e.err} }

// redisFailure maps a failed call to Redis at t to the exit code every
// command uses: 78 (errRedisRefused) when Redis refused jobd's
// configuration, with Redis's own message, such as NOPERM, WRONGPASS or
// "ERR DB index is out of range"; else 69 (errRedisUnreachable). The
// password never appears.
func redisFailure(t redisTarget, err error) error {
	if isRefusal(err) {
		return &exitError{code: exitConfig, err: &redisError{kind: errRedisRefused, err: err,
			msg: fmt.Sprintf("redis at %s refused: %s (check the ACL user, its password and the database number)", t, scrub(err.Error(), t.url))}}
	}
	return &exitError{code: exitUnavailable, err: &redisError{kind: errRedisUnreachable, err: err,
		msg: fmt.Sprintf("redis unreachable at %s: %s", t, scrub(err.Error(), t.url))}}
}

var userinfo = regexp.MustCompile(`//[^/@]*@`)

// redactURL hides the password (and user) of a Redis URL.
func redactURL(raw string) string {
	if u, err := url.Parse(raw); err == nil {
		return u.Redacted()
	}
	return userinfo.ReplaceAllString(raw, "//xxxxx@")
}

// scrub removes the raw URL and its password from an error message.
func scrub(msg, raw string) string {
	msg = strings.ReplaceAll(msg, raw, redactURL(raw))
	if u, err := url.Parse(raw); err == nil {
		if p, ok := u.User.Password(); ok && p != "" {
			msg = strings.ReplaceAll(msg, p, "xxxxx")
		}
	}
	return msg
}

// configPath is --config (or JOBD_CONFIG), else the default file;
// explicit says whether it was given. An empty JOBD_CONFIG counts as unset.
func configPath(c *cli.Context) (path string, explicit bool) {
	if v := c.String("config"); c.IsSet("config") && v != "" {
		return v, true
	}
	return defaultConfig, false
}

// loadConfig loads the schedule file; problems are exit 1, one per line.
func loadConfig(c *cli.Context) (*jobs.Config, error) {
	path, _ := configPath(c)
	cfg, err := jobs.Load(path)
	if err != nil {
		var ps jobs.Problems
		if errors.As(err, &ps) {
			return nil, &exitError{code: exitFailure, plain: true,
				err: fmt.Errorf("%w\n%d problem(s) in %s", err, len(ps), path)}
		}
		return nil, exitf(exitFailure, "%w", err)
	}
	return cfg, nil
}

// optionalConfig loads the schedule file for the commands that can work
// without one (lock, status, history), so that they find the file's
// redis: settings: a file given with --config or JOBD_CONFIG must load
// (exit 1 with its problems), the default file is read when it exists,
// and a missing default file is nil, nil.
func optionalConfig(c *cli.Context) (*jobs.Config, error) {
	path, explicit := configPath(c)
	if !explicit {
		if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
	}
	return loadConfig(c)
}

// printJSON writes v as indented JSON: the --json output of every command.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// setting resolves a flag that the schedule file may also set: the flag
// or its environment variable wins, then the file, then the default. An
// empty value (JOBD_REDIS_URL=) counts as unset.
func setting(c *cli.Context, flag, fromFile, def string) string {
	if v := c.String(flag); c.IsSet(flag) && v != "" {
		return v
	}
	if fromFile != "" {
		return fromFile
	}
	return def
}
