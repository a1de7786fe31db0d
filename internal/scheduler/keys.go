package scheduler

import (
	"strconv"
	"time"
)

// Every Redis key the scheduler owns is built here; docs/scheduler.md
// lists them. The instance name sits in a hash tag ({instance}), so that
// an instance's tick claims, records, history and last success share a
// Redis Cluster slot. That does not make the scripts Cluster-safe: the
// record scripts also touch the global running index, and claim-and-lock
// touches the claim and the lock's keys ({lock}), which live in other
// slots. jobd therefore needs one Redis primary (standalone, or behind
// Sentinel), and says so in docs/scheduler.md.

// tickKey is the claim of instance's tick t.
func (s *Store) tickKey(instance string, t time.Time) string {
	return s.prefix + ":tick:{" + instance + "}:" + strconv.FormatInt(t.Unix(), 10)
}

// manualClaimKey is the claim of a manual trigger: the run id makes it its
// own claim, apart from the tick at the time it was asked.
func (s *Store) manualClaimKey(instance string, at time.Time, runID string) string {
	return s.tickKey(instance, at) + ":manual:" + runID
}

// runsKey is the hash of an instance's records: run id -> record JSON.
func (s *Store) runsKey(instance string) string { return s.prefix + ":runs:{" + instance + "}" }

// histKey is the list of an instance's run ids, newest first.
func (s *Store) histKey(instance string) string { return s.prefix + ":hist:{" + instance + "}" }

// lastOKKey is an instance's last successful record.
func (s *Store) lastOKKey(instance string) string { return s.prefix + ":lastok:{" + instance + "}" }

// runningKey is the running index: run id -> instance, lock, fence,
// replica, incarnation.
func (s *Store) runningKey() string { return s.prefix + ":running" }

// replicaKey is a replica's heartbeat.
func (s *Store) replicaKey(id string) string { return s.prefix + ":replica:" + id }

// replicasKey is the set of replica ids that have sent a heartbeat; a
// member whose heartbeat key expired is dead and is pruned on read. It
// spares status and the config check a scan of the whole keyspace.
func (s *Store) replicasKey() string { return s.prefix + ":replicas" }

// triggersKey is the hash of pending manual trigger requests, and the
// pub/sub channel that nudges the replicas.
func (s *Store) triggersKey() string { return s.prefix + ":triggers" }
