package main

import (
	"io"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
)

// TestReadmeCommandsAndFlags: every `jobd COMMAND ...` the README shows in
// backticks or code blocks names a real command, and every --flag on that
// line is a global flag or one of that command's.
func TestReadmeCommandsAndFlags(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	app := newApp(io.Discard, io.Discard)
	names := func(fs []cli.Flag) (out []string) {
		for _, f := range fs {
			out = append(out, f.Names()...)
		}
		return append(out, "help")
	}
	global := names(app.Flags)
	invocation := regexp.MustCompile("(?m)(?:^|`)jobd ((?:-[^ `]+ (?:[^- `][^ `]*)? ?)*)([a-z]+)((?: [^`\n]*)?)")
	checked := 0
	for _, m := range invocation.FindAllStringSubmatch(string(readme), -1) {
		cmd := app.Command(m[2])
		if cmd == nil {
			continue // prose: "jobd runs cron jobs", "jobd keeps every claim"
		}
		checked++
		allowed := append(names(cmd.Flags), global...)
		args := m[1] + " " + m[3]
		if i := strings.Index(args, " -- "); i >= 0 {
			args = args[:i] // a locked command's own flags
		}
		for _, flag := range regexp.MustCompile(`(?:^|[ \[])--?([a-z][a-z-]*)`).FindAllStringSubmatch(args, -1) {
			if !slices.Contains(allowed, flag[1]) {
				t.Errorf("README: `jobd %s%s%s`: %s has no flag --%s", m[1], m[2], m[3], m[2], flag[1])
			}
		}
	}
	if checked < 15 {
		t.Fatalf("only %d invocations found in the README: the pattern no longer matches", checked)
	}
}
