package scheduler

import (
	"context"
	"encoding/json"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// TriggerRequest asks the cluster to run an instance now (`jobd trigger`).
type TriggerRequest struct {
	RunID       string    `json:"run_id"`
	Instance    string    `json:"instance"`
	RequestedAt time.Time `json:"requested_at"`
	RequestedBy string    `json:"requested_by"`
}

// triggerTTL: a request nobody picked up in this long is dropped.
const triggerTTL = time.Minute

// RequestTrigger files a request and nudges the replicas (one round trip;
// on a quorum, on every node, and a majority must take it).
func (s *Store) RequestTrigger(ctx context.Context, req TriggerRequest) error {
	b, _ := json.Marshal(req)
	return s.writeAll(ctx, func(ctx context.Context, rdb redis.UniversalClient) error {
		// A plain pipeline: both commands are safe to repeat, and MULTI
		// would need one more ACL permission.
		pipe := rdb.Pipeline()
		pipe.HSet(ctx, s.triggersKey(), req.RunID, b)
		pipe.Publish(ctx, s.triggersKey(), req.RunID)
		_, err := pipe.Exec(ctx)
		return err
	})
}

// CancelTrigger withdraws a request nobody picked up, and removes one
// that was picked up (on a quorum, from every node; a majority must
// answer).
func (s *Store) CancelTrigger(ctx context.Context, runID string) error {
	return s.writeAll(ctx, func(ctx context.Context, rdb redis.UniversalClient) error {
		return rdb.HDel(ctx, s.triggersKey(), runID).Err()
	})
}

// writeAll runs a write that has no outcome but its error on every node:
// done when a majority did it.
func (s *Store) writeAll(ctx context.Context, f func(ctx context.Context, rdb redis.UniversalClient) error) error {
	if rdb := s.single(); rdb != nil {
		return f(ctx, rdb)
	}
	_, err := writeMajority(ctx, s, func(struct{}) bool { return true }, func(ctx context.Context, rdb redis.UniversalClient) (struct{}, error) {
		return struct{}{}, f(ctx, rdb)
	})
	return err
}

// TriggerPending reports whether a request is still waiting to be picked
// up: once a replica has claimed it, the request is removed. On a quorum
// it is true when any node that answered has it (a node that was down
// when it was picked up may still have it: see docs/scheduler.md); false
// needs a majority of answers.
func (s *Store) TriggerPending(ctx context.Context, runID string) (bool, error) {
	if rdb := s.single(); rdb != nil {
		return rdb.HExists(ctx, s.triggersKey(), runID).Result()
	}
	return anyNode(ctx, s, func(ctx context.Context, rdb redis.UniversalClient) (bool, error) {
		return rdb.HExists(ctx, s.triggersKey(), runID).Result()
	})
}

// Record returns one run's record, if it exists. On a quorum it is the
// most advanced state any node that answered has (a majority must).
func (s *Store) Record(ctx context.Context, r Ref, runID string) (Record, bool, error) {
	if rdb := s.single(); rdb != nil {
		return s.record(ctx, rdb, r, runID)
	}
	all, err := readAll(ctx, s, func(ctx context.Context, rdb redis.UniversalClient) ([]Record, error) {
		rec, found, err := s.record(ctx, rdb, r, runID)
		if !found {
			return nil, err
		}
		return []Record{rec}, err
	})
	if err != nil {
		return Record{}, false, err
	}
	if m := mergeRecords(all...); len(m) == 1 {
		return m[0], true, nil
	}
	return Record{}, false, nil
}

// record is Record on one node.
func (s *Store) record(ctx context.Context, rdb redis.UniversalClient, r Ref, runID string) (Record, bool, error) {
	b, err := rdb.HGet(ctx, s.runsKey(r), runID).Bytes()
	if err == redis.Nil {
		return Record{}, false, nil
	}
	if err != nil {
		return Record{}, false, err
	}
	var rec Record
	return rec, json.Unmarshal(b, &rec) == nil, nil
}

// pendingTriggers are the requests waiting to be picked up; on a quorum,
// the union of the nodes' (a majority must answer).
func (s *Store) pendingTriggers(ctx context.Context) ([]TriggerRequest, error) {
	if rdb := s.single(); rdb != nil {
		return s.pendingTriggersOn(ctx, rdb)
	}
	all, err := readAll(ctx, s, s.pendingTriggersOn)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	var out []TriggerRequest
	for _, reqs := range all {
		for _, r := range reqs {
			if !seen[r.RunID] {
				seen[r.RunID] = true
				out = append(out, r)
			}
		}
	}
	return out, nil
}

// pendingTriggersOn is pendingTriggers on one node.
func (s *Store) pendingTriggersOn(ctx context.Context, rdb redis.UniversalClient) ([]TriggerRequest, error) {
	all, err := rdb.HGetAll(ctx, s.triggersKey()).Result()
	if err != nil {
		return nil, err
	}
	out := make([]TriggerRequest, 0, len(all))
	for _, b := range all {
		var r TriggerRequest
		if json.Unmarshal([]byte(b), &r) == nil {
			out = append(out, r)
		}
	}
	return out, nil
}

// subscribeTriggers subscribes to the trigger nudges: on one node its
// channel as it is; on a quorum, every node's merged into one, by a
// goroutine per node. stop ends the subscriptions and waits for those
// goroutines; the caller (the triggers component) must call it.
func (s *Store) subscribeTriggers(ctx context.Context) (msgs <-chan *redis.Message, stop func()) {
	if rdb := s.single(); rdb != nil {
		ps := rdb.Subscribe(ctx, s.triggersKey())
		return ps.Channel(), func() { ps.Close() }
	}
	out := make(chan *redis.Message, len(s.nodes))
	done := make(chan struct{})
	var wg sync.WaitGroup
	subs := make([]*redis.PubSub, len(s.nodes))
	for i, rdb := range s.nodes {
		// A node that is down is subscribed to when it comes back: the
		// PubSub reconnects on its own.
		subs[i] = rdb.Subscribe(ctx, s.triggersKey())
		ch := subs[i].Channel()
		wg.Go(func() {
			for {
				select {
				case <-done:
					return
				case m, ok := <-ch:
					if !ok {
						return
					}
					select {
					case out <- m:
					case <-done:
						return
					default: // a nudge is pending already: one is enough
					}
				}
			}
		})
	}
	return out, func() {
		close(done)
		for _, ps := range subs {
			ps.Close()
		}
		wg.Wait()
	}
}

// triggers is the component that picks up trigger requests: woken by
// their pub/sub nudge, and every maintenance interval in case a nudge was
// lost. Every replica that has the instance claims the request's own claim
// key, so exactly one runs it, through the job's lock and overlap policy.
type triggers struct {
	*core
	claimer *claimer
	loop
}

func (tr *triggers) start(ctx context.Context) { tr.loop.start(func() { tr.run(ctx) }) }

func (tr *triggers) run(ctx context.Context) {
	msgs, stop := tr.store.subscribeTriggers(ctx)
	defer stop()
	t := time.NewTicker(tr.maintEvery)
	defer t.Stop()
	for {
		func() {
			defer tr.recoverPanic("trigger")
			tr.take(ctx)
		}()
		select {
		case <-ctx.Done():
			return
		case <-msgs:
		case <-t.C:
		}
	}
}

// take claims the pending requests for instances this replica has.
func (tr *triggers) take(ctx context.Context) {
	qctx, cancel := context.WithTimeout(ctx, redisTimeout)
	reqs, err := tr.store.pendingTriggers(qctx)
	cancel()
	if err != nil || len(reqs) == 0 {
		return
	}
	cfg := tr.cfg.Load()
	var claims []*Claim
	for _, r := range reqs {
		in, ok := cfg.Instance(r.Instance)
		if time.Since(r.RequestedAt) > triggerTTL {
			_ = tr.store.CancelTrigger(ctx, r.RunID) // stale: the asker gave up
			continue
		}
		if !ok || !in.Enabled {
			continue // another replica's config may have it
		}
		c := tr.newClaim(in, tr.store.manualClaimKey(RefOf(in), r.RequestedAt, r.RunID), r.RequestedAt, r.RunID, "manual")
		// The run id is the asker's, the same on every pass: the value
		// gets a nonce so that a later pass (the request's removal
		// failed, or the replica restarted) never finds the claim its
		// own and runs the request again.
		c.Value += ":" + randomHex(4)
		claims = append(claims, c)
	}
	if len(claims) == 0 {
		return
	}
	for i, won := range tr.claimer.claim(ctx, claims) {
		if won {
			tr.log.Info("trigger picked up", "job", claims[i].in.Name, "run_id", claims[i].rec.RunID)
			_ = tr.store.CancelTrigger(ctx, claims[i].rec.RunID)
		}
	}
}
