package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/redis/go-redis/v9"
)

// How often the daemon checks Redis for systemd's STATUS=: often while
// it waits for Redis, rarely once Redis answers (the scheduler notices
// outages itself).
const (
	watchDown = time.Second
	watchUp   = 5 * time.Second
)

// checkRedis pings Redis and then probes, without changing anything, that
// jobd's user may do what the daemon does under t's prefix: read and
// write keys, run scripts, publish, read the time. A refusal is
// errRedisRefused (exit 78), anything else errRedisUnreachable (exit 69);
// see redisFailure.
func checkRedis(ctx context.Context, rdb redis.UniversalClient, t redisTarget) error {
	pctx, cancel := context.WithTimeout(ctx, pingTimeout)
	defer cancel()
	if err := rdb.Ping(pctx).Err(); err != nil {
		return redisFailure(t, err)
	}
	probe := t.prefix + ":acl-probe" // never written: PEXPIRE of a missing key does nothing
	pipe := rdb.Pipeline()
	pipe.Time(pctx)
	pipe.Exists(pctx, probe)
	pipe.PExpire(pctx, probe, time.Second)
	pipe.Eval(pctx, "return 1", []string{probe})
	pipe.Publish(pctx, probe, "")
	if _, err := pipe.Exec(pctx); err != nil {
		return redisFailure(t, err)
	}
	return nil
}

// reason is the printable message of a redisFailure (the password
// removed), or err's own.
func reason(err error) string {
	var re *redisError
	if errors.As(err, &re) {
		return re.msg
	}
	return err.Error()
}

// redisStatus is the STATUS= line systemd shows for the daemon.
func redisStatus(t redisTarget, err error, instances int) string {
	var re *redisError
	switch {
	case err == nil && instances == 1:
		return "running: 1 instance"
	case err == nil:
		return fmt.Sprintf("running: %d instances", instances)
	case errors.As(err, &re) && errors.Is(err, errRedisRefused):
		return "redis refused: " + re.err.Error()
	case errors.As(err, &re):
		return fmt.Sprintf("waiting for Redis at %s: %s", t, scrub(re.err.Error(), t.url))
	}
	return fmt.Sprintf("waiting for Redis at %s: %v", t, err)
}

// watchRedis keeps systemd's STATUS= up to date with whether Redis
// answers (startErr is the check made at start) until stop is called. A
// refusal (errRedisRefused) before Redis first passed checkRedis is sent
// on refused: the daemon exits 78, since waiting will not fix it. Later
// refusals only show in STATUS= and the scheduler's logs.
func watchRedis(ctx context.Context, rdb redis.UniversalClient, t redisTarget, startErr error, instances func() int, log *slog.Logger) (refused <-chan error, stop func()) {
	ch := make(chan error, 1)
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	status := redisStatus(t, startErr, instances())
	systemdNotify("STATUS=" + status)
	go func() {
		defer close(done)
		lastErr, checked := startErr, startErr == nil
		for {
			d := watchUp
			if lastErr != nil {
				d = watchDown
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(d):
			}
			var err error
			if checked {
				pctx, pcancel := context.WithTimeout(ctx, pingTimeout)
				if perr := rdb.Ping(pctx).Err(); perr != nil {
					err = redisFailure(t, perr)
				}
				pcancel()
			} else {
				err = checkRedis(ctx, rdb, t)
			}
			if ctx.Err() != nil {
				return
			}
			if !checked && errors.Is(err, errRedisRefused) {
				ch <- err
				return
			}
			if err == nil && !checked {
				checked = true
				log.Info("redis answers; claiming starts", "redis", t.String())
			}
			lastErr = err
			if s := redisStatus(t, err, instances()); s != status {
				status = s
				systemdNotify("STATUS=" + status)
			}
		}
	}()
	return ch, func() { cancel(); <-done }
}
