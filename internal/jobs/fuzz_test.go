package jobs

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzParse: the loader never panics, and either returns a config or
// problems, whatever the input.
func FuzzParse(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/invalid/*.yaml")
	seeds = append(seeds, "../../jobs.example.yaml")
	for _, s := range seeds {
		if data, err := os.ReadFile(s); err == nil {
			f.Add(data)
		}
	}
	f.Add([]byte("jobs: [{name: a, schedule: '@every 1s', command: [x], params: [{a: 1}]}]"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse("fuzz.yaml", data)
		if (cfg == nil) == (err == nil) {
			t.Fatalf("Parse returned cfg=%v err=%v", cfg != nil, err)
		}
		if cfg != nil {
			for _, in := range cfg.Instances {
				if in.Lock == "" || len(in.Argv) == 0 || in.Name == "" {
					t.Fatalf("invalid instance accepted: %+v", in)
				}
			}
		}
	})
}
