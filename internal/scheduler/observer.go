package scheduler

import "time"

// Observer sees what the scheduler did, after the fact: the daemon's
// metrics implement it. Its methods must not block. A panic in one is
// logged and ignored, so an observer can never break scheduling. Embed
// NopObserver to implement only some methods.
type Observer interface {
	ClaimWon(instance string)
	ClaimLost(instance string)                     // another replica claimed the tick
	ClockRefused(instance string)                  // not claimed: this replica's clock is off
	Skipped(instance, reason string)               // claimed, not run
	RunStarted(instance string, lag time.Duration) // lag: fire time to process start
	RunFinished(rec Record, dur time.Duration)
	RedisError(op string)
	ClaimLatency(d time.Duration) // one claim-and-lock round trip (a batch)
}

// NopObserver observes nothing; embed it to implement part of Observer.
type NopObserver struct{}

func (NopObserver) ClaimWon(string)                   {}
func (NopObserver) ClaimLost(string)                  {}
func (NopObserver) ClockRefused(string)               {}
func (NopObserver) Skipped(string, string)            {}
func (NopObserver) RunStarted(string, time.Duration)  {}
func (NopObserver) RunFinished(Record, time.Duration) {}
func (NopObserver) RedisError(string)                 {}
func (NopObserver) ClaimLatency(time.Duration)        {}
