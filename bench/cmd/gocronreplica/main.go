// Command gocronreplica is the peer of `jobd run` in `make
// bench-scheduler`: go-co-op/gocron v2 with a distributed locker on
// bsm/redislock, running N every-second jobs that each start the same
// command as jobd's (bash, appending one line: instance, tick, replica,
// start time).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/bsm/redislock"
	"github.com/go-co-op/gocron/v2"
	"github.com/redis/go-redis/v9"
)

type locker struct{ l *redislock.Client }

// Lock takes the job's lock for one run, without waiting: a replica that
// finds it held skips the run, as gocron expects.
func (k locker) Lock(ctx context.Context, key string) (gocron.Lock, error) {
	lock, err := k.l.Obtain(ctx, "gocron:"+key, 10*time.Second, nil)
	if err != nil {
		return nil, err
	}
	return unlocker{lock}, nil
}

type unlocker struct{ l *redislock.Lock }

func (u unlocker) Unlock(ctx context.Context) error { return u.l.Release(ctx) }

func main() {
	addr := flag.String("addr", "", "redis host:port")
	n := flag.Int("n", 200, "instances")
	out := flag.String("out", "", "file the runs append to")
	id := flag.String("id", "", "replica id")
	flag.Parse()
	rdb := redis.NewClient(&redis.Options{Addr: *addr, PoolSize: 50})
	s, err := gocron.NewScheduler(gocron.WithDistributedLocker(locker{redislock.New(rdb)}))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	for i := 0; i < *n; i++ {
		name := "i" + strconv.Itoa(i)
		_, err := s.NewJob(gocron.CronJob("* * * * * *", true), gocron.NewTask(func() {
			tick := time.Now().Truncate(time.Second).UTC().Format(time.RFC3339)
			line := fmt.Sprintf("echo %s %s %s $EPOCHREALTIME >> %s", name, tick, *id, *out)
			_ = exec.Command("bash", "-c", line).Run()
		}), gocron.WithName(name))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
	s.Start()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
	_ = s.Shutdown()
}
