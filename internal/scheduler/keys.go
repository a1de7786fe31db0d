package scheduler

import (
	"strconv"
	"time"

	"github.com/jobd/jobd/internal/jobs"
)

// Every Redis key the scheduler owns is built here; docs/scheduler.md
// lists them.
//
// Redis Cluster: every key that a claim, a lock or a record script
// touches carries the lock's name as its hash tag ({lock}), as the
// mutex's own keys do (internal/mutex/keys.go). A tick's claim, its lock,
// its run's record, the instance's history and last success, and the
// lock's running index therefore share one slot, and every script and
// atomic pipeline stays in it. Instances that share a lock share a slot;
// different locks spread over all slots. The price: an instance's history
// lives under its lock's name, so renaming an instance's lock starts a
// new history (docs/scheduler.md says so).

// Ref names an instance's records: the instance and the lock it takes
// (rendered), whose hash tag the keys carry.
type Ref struct{ Instance, Lock string }

// RefOf is in's Ref.
func RefOf(in *jobs.Instance) Ref { return Ref{Instance: in.Name, Lock: in.Lock} }

// refOf is the Ref a record names.
func refOf(rec *Record) Ref { return Ref{Instance: rec.Instance, Lock: rec.Lock} }

// tag is the hash tag of the lock's keys: the prefix, then {lock}.
func (s *Store) tag(kind, lock string) string { return s.prefix + ":" + kind + ":{" + lock + "}" }

// tickKey is the claim of the instance's tick t.
func (s *Store) tickKey(r Ref, t time.Time) string {
	return s.tag("tick", r.Lock) + ":" + r.Instance + ":" + strconv.FormatInt(t.Unix(), 10)
}

// legacyTickKey is the claim of the instance's tick t in the layout
// before the lock's hash tag (P:tick:{INSTANCE}:UNIX), which misfire
// handling still reads so that an upgrade never runs a tick twice.
func (s *Store) legacyTickKey(instance string, t time.Time) string {
	return s.prefix + ":tick:{" + instance + "}:" + strconv.FormatInt(t.Unix(), 10)
}

// manualClaimKey is the claim of a manual trigger: the run id makes it its
// own claim, apart from the tick at the time it was asked.
func (s *Store) manualClaimKey(r Ref, at time.Time, runID string) string {
	return s.tickKey(r, at) + ":manual:" + runID
}

// runsKey is the hash of an instance's records: run id -> record JSON.
func (s *Store) runsKey(r Ref) string { return s.tag("runs", r.Lock) + ":" + r.Instance }

// histKey is the list of an instance's run ids, newest first.
func (s *Store) histKey(r Ref) string { return s.tag("hist", r.Lock) + ":" + r.Instance }

// lastOKKey is an instance's last successful record.
func (s *Store) lastOKKey(r Ref) string { return s.tag("lastok", r.Lock) + ":" + r.Instance }

// runningKey is a lock's running index: run id -> instance, lock, fence,
// replica, incarnation, for the runs of every instance that takes it.
func (s *Store) runningKey(lock string) string { return s.tag("running", lock) }

// runningLocksKey is the set of lock names that have had a running index,
// so that readers find the runs of locks no longer in their config.
func (s *Store) runningLocksKey() string { return s.prefix + ":running-locks" }

// replicaKey is a replica's heartbeat.
func (s *Store) replicaKey(id string) string { return s.prefix + ":replica:" + id }

// replicasKey is the set of replica ids that have sent a heartbeat; a
// member whose heartbeat key expired is dead and is pruned on read. It
// spares status and the config check a scan of the whole keyspace.
func (s *Store) replicasKey() string { return s.prefix + ":replicas" }

// triggersKey is the hash of pending manual trigger requests, and the
// pub/sub channel that nudges the replicas.
func (s *Store) triggersKey() string { return s.prefix + ":triggers" }

// ConfigRef is the Ref of the instance called name in cfg; an instance
// cfg does not have (nil cfg, or one removed since) is taken to have had
// the default lock, its own name.
func ConfigRef(cfg *jobs.Config, name string) Ref {
	if cfg != nil {
		if in, ok := cfg.Instance(name); ok {
			return RefOf(in)
		}
	}
	return Ref{Instance: name, Lock: name}
}
