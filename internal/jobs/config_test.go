package jobs

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite golden files")

// TestInvalidGolden: every file under testdata/invalid yields exactly the
// problems in its .golden file, all of them, with positions.
func TestInvalidGolden(t *testing.T) {
	files, _ := filepath.Glob("testdata/invalid/*.yaml")
	if len(files) < 5 {
		t.Fatalf("only %d invalid test files", len(files))
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			_, err := Load(f)
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("Load: %v, want ErrInvalid", err)
			}
			got := err.Error() + "\n"
			golden := strings.TrimSuffix(f, ".yaml") + ".golden"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("problems differ from %s:\n--- got\n%s--- want\n%s", golden, got, want)
			}
		})
	}
}

func TestTooLarge(t *testing.T) {
	data := []byte("jobs: []\n" + strings.Repeat("# padding\n", MaxFileSize/10+1))
	_, err := Parse("big.yaml", data)
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("Parse(big): %v", err)
	}
}

// TestHostStartingFile: the file the systemd recipe installs is valid
// and runs nothing.
func TestHostStartingFile(t *testing.T) {
	cfg, err := Load("../../systemd/jobs.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Instances) != 0 {
		t.Fatalf("%d instances: a fresh host must run nothing", len(cfg.Instances))
	}
}

func TestExample(t *testing.T) {
	cfg, err := Load("../../jobs.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := cfg.Summary(), "6 jobs, 8 instances, 7 locks"; got != want {
		t.Errorf("summary %q, want %q", got, want)
	}
	tests := []struct {
		name, lock string
		argv       []string
		env        map[string]string
		paramEnv   []string
	}{
		{"emit-access-token[42]", "EmitAccessToken:42", []string{"sh", "-c", "echo emitting a token for user $JOBD_PARAM", "emit"},
			map[string]string{"TOKEN_AUDIENCE": "api", "JOBD_EXAMPLE": "1"}, []string{"JOBD_PARAM=42"}},
		{"sync-tenant[region=eu,tenant=acme]", "tenant:acme", nil, map[string]string{"REGION": "eu", "JOBD_EXAMPLE": "1"},
			[]string{`JOBD_PARAM={"region":"eu","tenant":"acme"}`, "JOBD_PARAM_REGION=eu", "JOBD_PARAM_TENANT=acme"}},
		{"db-backup", "db-maintenance", []string{"/bin/sh", "-c", "echo backing up; sleep 2"}, nil, nil},
		{"heartbeat", "heartbeat", nil, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in, ok := cfg.Instance(tt.name)
			if !ok {
				t.Fatalf("no instance %q", tt.name)
			}
			if in.Lock != tt.lock {
				t.Errorf("lock %q, want %q", in.Lock, tt.lock)
			}
			if tt.argv != nil && strings.Join(in.Argv, "\x00") != strings.Join(tt.argv, "\x00") {
				t.Errorf("argv %q, want %q", in.Argv, tt.argv)
			}
			for k, v := range tt.env {
				if in.Env[k] != v {
					t.Errorf("env %s=%q, want %q", k, in.Env[k], v)
				}
			}
			if tt.paramEnv != nil && strings.Join(in.ParamEnv(), " ") != strings.Join(tt.paramEnv, " ") {
				t.Errorf("param env %q, want %q", in.ParamEnv(), tt.paramEnv)
			}
		})
	}
	backup, _ := cfg.Instance("db-backup")
	if backup.Timezone != "Europe/Paris" || backup.Timeout != 10*time.Minute || backup.Misfire != MisfireRunOnce || backup.StartingDeadline != time.Hour {
		t.Errorf("db-backup options: %+v", backup)
	}
}

// TestShellCommandNotTemplated: a string command keeps template text as is;
// the param reaches it only through the environment.
func TestShellCommandNotTemplated(t *testing.T) {
	cfg, err := Parse("t.yaml", []byte(`
jobs:
  - name: sh
    schedule: "@hourly"
    params: ["x; rm -rf /"]
    command: "echo {{ .Param }} $JOBD_PARAM"
`))
	if err != nil {
		t.Fatal(err)
	}
	in := cfg.Instances[0]
	if in.Argv[2] != "echo {{ .Param }} $JOBD_PARAM" {
		t.Fatalf("shell command was rewritten: %q", in.Argv)
	}
	if got := in.ParamEnv(); len(got) != 1 || got[0] != "JOBD_PARAM=x; rm -rf /" {
		t.Fatalf("param env %q", got)
	}
}

// TestHashIgnoresLayout: comments and key order do not change the hash;
// a schedule change does.
func TestHashIgnoresLayout(t *testing.T) {
	a := "jobs:\n  - name: a\n    schedule: \"@hourly\"\n    command: [x]\n"
	b := "# comment\njobs:\n  - command: [x]   # here too\n    name: a\n    schedule: \"@hourly\"\n"
	c := "jobs:\n  - name: a\n    schedule: \"@daily\"\n    command: [x]\n"
	hash := func(s string) string {
		cfg, err := Parse("h.yaml", []byte(s))
		if err != nil {
			t.Fatal(err)
		}
		return cfg.Hash
	}
	if hash(a) != hash(b) || hash(a) == hash(c) {
		t.Fatalf("hashes: a=%s b=%s c=%s", hash(a), hash(b), hash(c))
	}
}

// TestHashUnchanged: the config hash, fed to SHA-256 entry by entry, is
// still the SHA-256 of the whole JSON array, so that replicas of an older
// version agree with this one on an unchanged file.
func TestHashUnchanged(t *testing.T) {
	for _, file := range []string{"../../jobs.example.yaml", "../../systemd/jobs.yaml"} {
		cfg, err := Load(file)
		if err != nil {
			t.Fatal(err)
		}
		entries := make([]hashEntry, len(cfg.Instances))
		for i, in := range cfg.Instances {
			entries[i] = hashEntry{in, in.Schedule.Spec}
		}
		b, _ := json.Marshal(entries)
		sum := sha256.Sum256(b)
		if want := hex.EncodeToString(sum[:]); cfg.Hash != want {
			t.Errorf("%s (%d instances): hash %s, want %s", file, len(cfg.Instances), cfg.Hash, want)
		}
	}
}

func TestMergeKeysAndAnchors(t *testing.T) {
	cfg, err := Parse("m.yaml", []byte(`
x-common: &common
  timeout: 5m
  lock_ttl: 10s
jobs:
  - name: a
    schedule: "@hourly"
    command: [x]
    <<: *common
`))
	if err == nil {
		t.Fatalf("top-level x-common accepted: %+v", cfg)
	}
	cfg, err = Parse("m.yaml", []byte(`
jobs:
  - &base
    name: a
    schedule: "@hourly"
    command: [x]
    timeout: 5m
  - <<: *base
    name: b
`))
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := cfg.Instance("b"); b == nil || b.Timeout != 5*time.Minute {
		t.Fatalf("merged job b: %+v", b)
	}
}

// TestSuggest: an unknown instance name whose job is known (the name
// itself, or the part before "[") is answered with that job's instances;
// a map param written with its keys in another order is named right.
func TestSuggest(t *testing.T) {
	cfg, err := Parse("t.yaml", []byte(`
jobs:
  - name: per-user
    schedule: "@daily"
    params: [alice, bob]
    command: ["true"]
  - name: tenant
    schedule: "@daily"
    params: [{tenant: acme, region: eu}, {tenant: bolt, region: us}]
    command: ["true"]
  - name: many
    schedule: "@daily"
    params: [a, b, c, d, e, f, g]
    command: ["true"]
  - name: plain
    schedule: "@daily"
    command: ["true"]
`))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct{ name, want string }{
		{"per-user", `; job "per-user" has the instances per-user[alice], per-user[bob]`},
		{"per-user[carol]", `; job "per-user" has the instances per-user[alice], per-user[bob]`},
		{"per-user[]", `; job "per-user" has the instances per-user[alice], per-user[bob]`},
		{"tenant[tenant=acme,region=eu]", `; did you mean "tenant[region=eu,tenant=acme]"? (a map param names its instance with its keys sorted); job "tenant" has the instances tenant[region=eu,tenant=acme], tenant[region=us,tenant=bolt]`},
		{"tenant[tenant=bolt, region=us]", `; did you mean "tenant[region=us,tenant=bolt]"? (a map param names its instance with its keys sorted); job "tenant" has the instances tenant[region=us,tenant=bolt], tenant[region=eu,tenant=acme]`},
		{"tenant[acme]", `; job "tenant" has the instances tenant[region=eu,tenant=acme], tenant[region=us,tenant=bolt]`},
		{"many[zz]", `; job "many" has the instances many[a], many[b], many[c], many[d], many[e], and 2 more`},
		{"many[ g ]", `; did you mean "many[g]"? (spaces count in instance names); job "many" has the instances many[g], many[a], many[b], many[c], many[d], and 2 more`},
		{"plain[x]", `; job "plain" has no params: its one instance is plain`},
		{"nosuch", ""},
		{"nosuch[x]", ""},
		{"[x]", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := cfg.Suggest(tt.name); got != tt.want {
				t.Fatalf("Suggest(%q) =\n  %q, want\n  %q", tt.name, got, tt.want)
			}
		})
	}
}
