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

// NewRunID returns a fresh run id for a run asked for at t.
func NewRunID(t time.Time) string { return newRunID(t) }

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
func (s *Store) Record(ctx context.Context, instance, runID string) (Record, bool, error) {
	b, err := s.rdb.HGet(ctx, s.runsKey(instance), runID).Bytes()
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

// triggerLoop picks up trigger requests: woken by their pub/sub nudge,
// and every maintenance interval in case a nudge was lost. Every replica
// that has the instance claims the request's own claim key, so exactly
// one runs it, through the job's lock and overlap policy.
func (s *Scheduler) triggerLoop(ctx, runs context.Context) {
	ps := s.store.rdb.Subscribe(ctx, s.store.triggersKey())
	defer ps.Close()
	msgs := ps.Channel()
	t := time.NewTicker(s.maintEvery)
	defer t.Stop()
	for {
		func() {
			defer s.recoverPanic("trigger")
			s.takeTriggers(ctx, runs)
		}()
		select {
		case <-ctx.Done():
			return
		case <-msgs:
		case <-t.C:
		}
	}
}

func (s *Scheduler) takeTriggers(ctx, runs context.Context) {
	qctx, cancel := context.WithTimeout(ctx, redisTimeout)
	reqs, err := s.store.pendingTriggers(qctx)
	cancel()
	if err != nil || len(reqs) == 0 {
		return
	}
	cfg := s.cfg.Load()
	var items []claimItem
	for _, r := range reqs {
		in, ok := cfg.Instance(r.Instance)
		if time.Since(r.RequestedAt) > triggerTTL {
			_ = s.store.CancelTrigger(ctx, r.RunID) // stale: the asker gave up
			continue
		}
		if !ok || !in.Enabled {
			continue // another replica's config may have it
		}
		items = append(items, claimItem{in: in, at: r.RequestedAt, runID: r.RunID,
			claimKey: s.store.manualClaimKey(in.Name, r.RequestedAt, r.RunID),
			// The run id is the asker's, the same on every pass: the value
			// gets a nonce so that a later pass (the request's removal
			// failed, or the replica restarted) never finds the claim its
			// own and runs the request again.
			value: claimValue(s.replica, r.RunID) + ":" + randomHex(4), trigger: "manual"})
	}
	if len(items) == 0 {
		return
	}
	for i, won := range s.claimItems(ctx, runs, items) {
		if won {
			s.log.Info("trigger picked up", "job", items[i].in.Name, "run_id", items[i].runID)
			_ = s.store.CancelTrigger(ctx, items[i].runID)
		}
	}
}
