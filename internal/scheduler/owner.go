package scheduler

import (
	"hash/fnv"
	"slices"
	"strconv"
	"time"
)

// Owner preference: for each instance and tick, every replica ranks the
// live replicas the same way, by rendezvous (highest random weight)
// hashing, so the ticks of an instance spread evenly over the replicas
// and a replica joining or leaving moves only its share. The first-ranked
// replica claims at once; the others wait by their rank (see ticker.fire).
// Nothing depends on the replicas agreeing: the claim decides.

// livePeers is the live replica ids as the last heartbeat read them, this
// replica included (also before the first heartbeat), sorted.
func (t *ticker) livePeers() []string {
	var ids []string
	if p := t.health.peers.Load(); p != nil {
		ids = slices.Clone(*p)
	}
	if !slices.Contains(ids, t.replica) {
		ids = append(ids, t.replica)
	}
	slices.Sort(ids)
	return ids
}

// rank is me's place (0: first) among peers for instance's tick at.
func rank(peers []string, me, instance string, at time.Time) int {
	mine := weight(me, instance, at)
	r := 0
	for _, p := range peers {
		if w := weight(p, instance, at); p != me && (w > mine || (w == mine && p < me)) {
			r++
		}
	}
	return r
}

// weight is replica's rendezvous weight for instance's tick at.
func weight(replica, instance string, at time.Time) uint64 {
	h := fnv.New64a()
	h.Write([]byte(replica))
	h.Write([]byte{0})
	h.Write([]byte(instance))
	h.Write([]byte{0})
	h.Write([]byte(strconv.FormatInt(at.Unix(), 10)))
	return mix(h.Sum64())
}

// mix spreads FNV's low-entropy output (splitmix64's finalizer), so that
// similar names do not rank alike.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	return x ^ x>>31
}
