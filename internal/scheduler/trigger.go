package scheduler

import (
	"context"
	"encoding/json"
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

// RequestTrigger files a request and nudges the replicas (one round trip).
func (s *Store) RequestTrigger(ctx context.Context, req TriggerRequest) error {
	b, _ := json.Marshal(req)
	// A plain pipeline: both commands are safe to repeat, and MULTI would
	// need one more ACL permission.
	pipe := s.rdb.Pipeline()
	pipe.HSet(ctx, s.triggersKey(), req.RunID, b)
	pipe.Publish(ctx, s.triggersKey(), req.RunID)
	_, err := pipe.Exec(ctx)
	return err
}

// CancelTrigger withdraws a request nobody picked up.
func (s *Store) CancelTrigger(ctx context.Context, runID string) error {
	return s.rdb.HDel(ctx, s.triggersKey(), runID).Err()
}

// TriggerPending reports whether a request is still waiting to be picked
// up: once a replica has claimed it, the request is removed.
func (s *Store) TriggerPending(ctx context.Context, runID string) (bool, error) {
	return s.rdb.HExists(ctx, s.triggersKey(), runID).Result()
}

// Record returns one run's record, if it exists.
func (s *Store) Record(ctx context.Context, r Ref, runID string) (Record, bool, error) {
	b, err := s.rdb.HGet(ctx, s.runsKey(r), runID).Bytes()
	if err == redis.Nil {
		return Record{}, false, nil
	}
	if err != nil {
		return Record{}, false, err
	}
	var rec Record
	return rec, json.Unmarshal(b, &rec) == nil, nil
}

func (s *Store) pendingTriggers(ctx context.Context) ([]TriggerRequest, error) {
	all, err := s.rdb.HGetAll(ctx, s.triggersKey()).Result()
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
	ps := tr.store.rdb.Subscribe(ctx, tr.store.triggersKey())
	defer ps.Close()
	msgs := ps.Channel()
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
