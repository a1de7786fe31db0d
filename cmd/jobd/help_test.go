package main

import (
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/jobd/jobd/internal/redistest"
)

// TestHelpAndEnv: the help lists every documented exit code, flag
// placeholders read as such, and an empty JOBD_LOG_* variable counts as
// unset, as the README says.
func TestHelpAndEnv(t *testing.T) {
	tests := []struct {
		name string
		env  []string
		args []string
		code int
		want string
	}{
		{"help lists 124", nil, []string{"--help"}, 0, "124   the run timed out (trigger --wait)"},
		{"lock's label placeholder", nil, []string{"lock", "--help"}, 0, "--label value"},
		{"empty JOBD_LOG_FORMAT", []string{"JOBD_LOG_FORMAT="}, []string{"-c", "../../jobs.example.yaml", "validate"}, 0, "ok:"},
		{"empty JOBD_LOG_LEVEL", []string{"JOBD_LOG_LEVEL="}, []string{"-c", "../../jobs.example.yaml", "validate"}, 0, "ok:"},
		{"--splay above 2s", nil, []string{"-c", "../../jobs.example.yaml", "run", "--splay", "5s"}, 2, "want between 0 and 2s"},
		{"stray argument", nil, []string{"-c", "../../jobs.example.yaml", "validate", "extra"}, 2, "validate takes no arguments"},
		{"history --limit 0", nil, []string{"history", "x", "-n", "0"}, 2, "want at least 1"},
		{"negative --shutdown-grace", nil, []string{"-c", "../../jobs.example.yaml", "run", "--shutdown-grace", "-1s"}, 2, "must not be negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd := exec.Command(jobdBin, tt.args...)
			cmd.Env = append(os.Environ(), tt.env...)
			out := &redistest.Buffer{}
			cmd.Stdout, cmd.Stderr = out, out
			err := cmd.Run()
			code := 0
			if ee, ok := err.(*exec.ExitError); ok {
				code = ee.ExitCode()
			}
			if code != tt.code || !strings.Contains(out.String(), tt.want) {
				t.Fatalf("exit %d, want %d; output lacks %q:\n%s", code, tt.code, tt.want, out.String())
			}
		})
	}
}

// TestFlagsFirst: global flags are accepted after the command, and a
// command's flags after its arguments; lock's command is never touched.
func TestFlagsFirst(t *testing.T) {
	app := newApp(io.Discard, io.Discard)
	tests := []struct{ in, want string }{
		{"jobd validate -c j.yaml", "jobd -c j.yaml validate"},
		{"jobd validate --config=j.yaml --log-level debug", "jobd --config=j.yaml --log-level debug validate"},
		{"jobd -c j.yaml validate", "jobd -c j.yaml validate"},
		{"jobd history web --limit 5 --redis redis://r/0", "jobd --redis redis://r/0 history --limit 5 web"},
		{"jobd trigger web --wait -c j.yaml", "jobd -c j.yaml trigger --wait web"},
		{"jobd status --json --prefix p", "jobd --prefix p status --json"},
		{"jobd lock k --ttl 5s -- sh -c x", "jobd lock --ttl 5s k -- sh -c x"},
		{"jobd lock k sh -c x", "jobd lock k sh -c x"},
		{"jobd lock -c j.yaml k -- true", "jobd -c j.yaml lock k -- true"},
		{"jobd validate --bogus", "jobd validate --bogus"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			if got := strings.Join(flagsFirst(app, strings.Fields(tt.in)), " "); got != tt.want {
				t.Fatalf("got  %q\nwant %q", got, tt.want)
			}
		})
	}
}
