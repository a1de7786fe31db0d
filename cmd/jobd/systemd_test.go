package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestSystemdUnits: systemd-analyze verify accepts the unit files (with
// ExecStart pointed at the test binary, since verify checks it exists).
func TestSystemdUnits(t *testing.T) {
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Fatal("systemd-analyze is not installed: run `sudo apt-get install -y systemd` (make test does it as root)")
	}
	for _, unit := range []struct{ file, as string }{
		{"jobd.service", "jobd.service"},
		{"jobd@.service", "jobd@demo.service"},
	} {
		t.Run(unit.file, func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join("../../systemd", unit.file))
			if err != nil {
				t.Fatal(err)
			}
			for _, want := range []string{"Type=notify", "WatchdogSec=", "ExecReload=/usr/local/bin/jobd --config /etc/jobd/jobs.yaml validate\nExecReload=/bin/kill -HUP $MAINPID", "TimeoutStopSec=60s",
				"Restart=on-failure", "EnvironmentFile=-/etc/default/jobd", "User=jobd", "NoNewPrivileges=yes",
				"ProtectSystem=", "PrivateTmp=yes", "ProtectHome=read-only"} {
				if !strings.Contains(string(b), want) {
					t.Errorf("%s lacks %s", unit.file, want)
				}
			}
			path := filepath.Join(t.TempDir(), unit.as)
			text := strings.ReplaceAll(string(b), "/usr/local/bin/jobd", jobdBin)
			if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command("systemd-analyze", "verify", path).CombinedOutput()
			if err != nil || len(strings.TrimSpace(string(out))) > 0 {
				t.Fatalf("systemd-analyze verify %s: %v\n%s", unit.file, err, out)
			}
		})
	}
}
