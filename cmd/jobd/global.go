package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/urfave/cli/v2"

	"github.com/jobd/jobd/internal/jobs"
)

// Defaults of the global flags.
const (
	defaultRedisURL = "redis://127.0.0.1:6379/0"
	defaultPrefix   = "jobd"
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

// connectRedis parses a Redis URL (see redisURL) and checks that Redis answers. Failures are
// exit 69 with a one-line reason that never shows the password.
func connectRedis(ctx context.Context, raw string) (redis.UniversalClient, error) {
	opt, err := redis.ParseURL(raw)
	if err != nil {
		return nil, exitf(exitUsage, "--redis %s: %s", redactURL(raw), scrub(err.Error(), raw))
	}
	// Deadlines on contexts must bound every call: keep-alive relies on it.
	opt.ContextTimeoutEnabled = true
	var rdb redis.UniversalClient = redis.NewClient(opt)
	pctx, cancel := context.WithTimeout(ctx, pingTimeout)
	defer cancel()
	if err := rdb.Ping(pctx).Err(); err != nil {
		rdb.Close()
		return nil, exitf(exitUnavailable, "redis unreachable at %s: %s", redactURL(raw), scrub(err.Error(), raw))
	}
	return rdb, nil
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

// loadConfig loads --config; problems are exit 1, one per line.
func loadConfig(c *cli.Context) (*jobs.Config, error) {
	cfg, err := jobs.Load(c.String("config"))
	if err != nil {
		if errors.Is(err, jobs.ErrInvalid) {
			return nil, &exitError{code: exitFailure, plain: true,
				err: fmt.Errorf("%w\n%d problem(s) in %s", err, len(err.(jobs.Problems)), c.String("config"))}
		}
		return nil, exitf(exitFailure, "%v", err)
	}
	return cfg, nil
}

// printJSON writes v as indented JSON: the --json output of every command.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// redisURL is --redis (or JOBD_REDIS_URL), else the file's redis.url,
// else the default.
func redisURL(c *cli.Context, cfg *jobs.Config) string {
	var file string
	if cfg != nil {
		file = cfg.Redis.URL
	}
	return setting(c, "redis", file, defaultRedisURL)
}

// keyPrefix is --prefix (or JOBD_PREFIX), else the file's redis.prefix,
// else the default.
func keyPrefix(c *cli.Context, cfg *jobs.Config) string {
	var file string
	if cfg != nil {
		file = cfg.Redis.Prefix
	}
	return setting(c, "prefix", file, defaultPrefix)
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
