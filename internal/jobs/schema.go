// Package jobs defines what a job is and how one run of it executes: the
// YAML schedule file, its validation and templates, and the process
// executor. When jobs run and who runs them is the scheduler's business.
package jobs

import (
	"time"

	"github.com/jobd/jobd/internal/mutex"
)

// File is the YAML document, as written. Field names are a contract with
// users: never rename one.
type File struct {
	Redis    RedisConfig `yaml:"redis"`
	Defaults Options     `yaml:"defaults"`
	Jobs     []Job       `yaml:"jobs"`
}

// RedisConfig may name the Redis to use; --redis and JOBD_REDIS_URL win.
// It names one Redis (url), a master watched by Sentinel (sentinel), a
// Redis Cluster (cluster) or a quorum of independent masters (quorum);
// see redis.go for the rules and the defaults.
type RedisConfig struct {
	URL      string          `yaml:"url"`      // default redis://127.0.0.1:6379/0
	Prefix   string          `yaml:"prefix"`   // default "jobd"
	Sentinel *SentinelConfig `yaml:"sentinel"` // instead of url
	Cluster  *ClusterConfig  `yaml:"cluster"`  // instead of url and sentinel
	Quorum   *QuorumConfig   `yaml:"quorum"`   // instead of url, sentinel and cluster
	// Credentials, database and TLS of the data nodes behind sentinel:,
	// cluster: or quorum: (with url they are part of the URL; tls: applies
	// to a url too, and turns TLS on with its CA and certificate).
	Username     string     `yaml:"username"`
	Password     string     `yaml:"password"`
	PasswordFile string     `yaml:"password_file"` // read at start; instead of password
	DB           int        `yaml:"db"`            // default 0; Redis Cluster has only 0
	TLS          *TLSConfig `yaml:"tls"`           // default: plain TCP
	// MinReplicasAcked: after a claim and after a lock is taken, jobd asks
	// Redis (WAIT) that this many replicas have the write, within
	// MinReplicasTimeout; if fewer do, the run is not started (fail
	// closed). Default 0: no WAIT. Not with cluster: or quorum:.
	MinReplicasAcked   int       `yaml:"min_replicas_acked"`
	MinReplicasTimeout *Duration `yaml:"min_replicas_timeout"` // default 1s
}

// ClusterConfig names some nodes of a Redis Cluster: jobd learns the
// rest, and follows failovers and slot moves, from them.
type ClusterConfig struct {
	Addrs []string `yaml:"addrs"` // required: host:port of one or more nodes
}

// QuorumConfig names independent Redis masters, none a replica of
// another, on which jobd takes each lock and tick claim on a majority
// (the Redlock approach): any minority of them may be down, or lose its
// data, without a tick running twice or a lock having two holders.
type QuorumConfig struct {
	// Addrs is required: host:port of each master, an odd number, at
	// least 3 (a majority of 3 is 2, of 5 is 3). Username,
	// password/password_file, db and tls apply to every one.
	Addrs []string `yaml:"addrs"`
}

// TLSConfig turns TLS on for the data nodes (and the sentinels): its
// presence is enough, `tls: {}` verifies the server against the system's
// roots.
type TLSConfig struct {
	CAFile     string `yaml:"ca_file"`     // PEM roots that sign the servers' certificates; default: the system's
	CertFile   string `yaml:"cert_file"`   // a client certificate (with key_file), when the servers ask for one
	KeyFile    string `yaml:"key_file"`    // its key
	ServerName string `yaml:"server_name"` // the name the certificate must carry; default: the host dialled
}

// SentinelConfig names a master watched by Redis Sentinel: jobd asks the
// sentinels for the current master and follows a failover by itself.
type SentinelConfig struct {
	Master           string   `yaml:"master"`            // required: the name in "sentinel monitor NAME ..."
	Addrs            []string `yaml:"addrs"`             // required: host:port of the sentinels
	SentinelPassword string   `yaml:"sentinel_password"` // if the sentinels require one
}

// Job is one entry of jobs:.
type Job struct {
	Name     string  `yaml:"name"`     // required; letters, digits, . _ - :
	Schedule string  `yaml:"schedule"` // required; see ParseSchedule
	Params   []any   `yaml:"params"`   // optional: one instance per item (scalar or map of scalars)
	Lock     string  `yaml:"lock"`     // template; default: the instance name
	Command  Command `yaml:"command"`  // required: a list (exec'd) or a string (run by shell -c)
	Options  `yaml:",inline"`
}

// Options are the job fields that defaults: may also set. Nil means unset;
// the defaults below apply when neither the job nor defaults: set a field.
type Options struct {
	Timezone         *string           `yaml:"timezone"`          // IANA name; default UTC
	Timeout          *Duration         `yaml:"timeout"`           // default 1h
	LockTTL          *Duration         `yaml:"lock_ttl"`          // default 30s; at least 3s
	KillGrace        *Duration         `yaml:"kill_grace"`        // SIGTERM to SIGKILL; default 10s
	Overlap          *string           `yaml:"overlap"`           // skip (default) or wait
	MaxWait          *Duration         `yaml:"max_wait"`          // overlap: wait bound; default: until the next fire time
	Misfire          *string           `yaml:"misfire"`           // skip (default) or run_once
	StartingDeadline *Duration         `yaml:"starting_deadline"` // misfire: run_once window; default 1m
	History          *int              `yaml:"history"`           // runs kept per instance; default 100, 1..10000
	Shell            *string           `yaml:"shell"`             // runs string commands; default /bin/sh
	Env              map[string]string `yaml:"env"`               // templated values; merged over defaults' env
	Workdir          *string           `yaml:"workdir"`           // templated; default: jobd's working directory
	Enabled          *bool             `yaml:"enabled"`           // false: not scheduled at all; default true
	Suspend          *bool             `yaml:"suspend"`           // true: listed, but no new runs; default false
	LogOutputLines   *int              `yaml:"log_output_lines"`  // output lines logged per run; default 1000, 0: none
}

// Defaults of Options, documented in jobs.example.yaml and the README.
const (
	DefaultTimezone         = "UTC"
	DefaultTimeout          = time.Hour
	DefaultLockTTL          = mutex.DefaultTTL
	MinLockTTL              = mutex.MinTTL
	DefaultKillGrace        = 10 * time.Second
	DefaultStartingDeadline = time.Minute
	DefaultHistory          = 100
	// DefaultLogOutputLines bounds the output lines one run logs, so that
	// a chatty job cannot flood the log; the record keeps the output's
	// tail whatever this says.
	DefaultLogOutputLines = 1000
	MaxHistory            = 10000
	DefaultShell          = "/bin/sh"
	// MaxFileSize bounds the schedule file; a larger one is refused.
	MaxFileSize = 1 << 20
)

// Overlap policies: what a tick does when its lock is held.
const (
	OverlapSkip = "skip" // record the tick as skipped, naming the holder
	OverlapWait = "wait" // wait for the lock until max_wait or the next fire time
)

// Misfire policies: what happens to a tick no replica claimed in time.
const (
	MisfireSkip    = "skip"     // never run it late
	MisfireRunOnce = "run_once" // run the latest missed tick once, if within starting_deadline
)

// Duration is a time.Duration written as "30s", "10m", "1h30m".
type Duration time.Duration

// Command is a job's command: Argv for the list form, or Shell for the
// string form (run as SHELL -c STRING, never templated).
type Command struct {
	Argv  []string
	Shell string
}
