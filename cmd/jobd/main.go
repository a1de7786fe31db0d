// Command jobd runs cron jobs across several replicas with Redis locks, so
// that every scheduled tick runs exactly once even when a machine dies.
//
// This file holds the wiring: global flags, logging, the Redis client and
// the mapping of failures to documented exit codes.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"

	"github.com/urfave/cli/v2"
)

// Set by the Makefile with -ldflags -X.
var (
	version = "dev"
	commit  = "unknown"
)

// Exit codes. They are documented in `jobd --help` and the README; scripts
// and monitoring rely on them, so never renumber one.
const (
	exitOK          = 0
	exitFailure     = 1   // generic failure (for example an invalid config)
	exitUsage       = 2   // bad flags or arguments
	exitUnavailable = 69  // Redis unreachable (EX_UNAVAILABLE)
	exitLeaseLost   = 70  // the lock's lease was lost while the command ran
	exitNotObtained = 75  // lock not obtained within --wait (EX_TEMPFAIL)
	exitConfig      = 78  // Redis refused: configuration or permission error (EX_CONFIG)
	exitCannotExec  = 126 // the command exists but could not be started
	exitNotFound    = 127 // the command was not found
)

const exitCodesHelp = `EXIT CODES:
   0     success (jobd lock: the command's own exit code is passed through)
   1     generic failure
   2     bad flags or arguments, or unknown instance
   3     no replica is alive (status, trigger)
   69    Redis unreachable
   70    lease lost while the command ran (it was terminated)
   75    lock not obtained within --wait
   78    Redis refused: configuration or permission error (NOPERM, wrong
         password, database out of range); Redis's own message is shown
   126   command could not be started
   127   command not found
   128+N command killed by signal N`

// exitError carries an exit code up to main.
type exitError struct {
	code  int
	err   error
	plain bool // print the message as is, without "jobd: " (validation problems)
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func exitf(code int, format string, args ...any) error {
	return &exitError{code: code, err: fmt.Errorf(format, args...)}
}

// exitCode returns the code for err; a silent exit (the child's own code)
// has a nil inner error.
func exitCode(err error) (int, string) {
	if err == nil {
		return exitOK, ""
	}
	var ee *exitError
	if errors.As(err, &ee) {
		switch {
		case ee.err == nil:
			return ee.code, ""
		case ee.plain:
			return ee.code, ee.err.Error()
		}
		return ee.code, "jobd: " + ee.err.Error()
	}
	// Anything else comes from flag parsing in urfave/cli.
	return exitUsage, "jobd: " + err.Error()
}

func newApp(stdout, stderr io.Writer) *cli.App {
	app := &cli.App{
		Name:    "jobd",
		Usage:   "run cron jobs exactly once across replicas, with Redis locks",
		Version: version,
		Description: "Several identical jobd replicas read one schedule; on every tick each tries to\n" +
			"claim it in Redis and only the winner runs the job. `jobd lock` runs one command\n" +
			"under the same locks, like flock(1) across machines.",
		Writer:                 stdout,
		ErrWriter:              stderr,
		Flags:                  globalFlags(),
		UseShortOptionHandling: true,
		HideVersion:            false,
		Commands: []*cli.Command{
			runCommand(),
			lockCommand(),
			validateCommand(),
			planCommand(),
			statusCommand(),
			historyCommand(),
			triggerCommand(),
			versionCommand(),
		},
		CustomAppHelpTemplate: cli.AppHelpTemplate + "\n" + exitCodesHelp + "\n",
		ExitErrHandler:        func(*cli.Context, error) {}, // main maps errors to codes
	}
	return app
}

func versionCommand() *cli.Command {
	return &cli.Command{
		Name:  "version",
		Usage: "print the version, commit and Go version",
		Flags: []cli.Flag{&cli.BoolFlag{Name: "json", Usage: "print one JSON object"}},
		Action: func(c *cli.Context) error {
			if c.Bool("json") {
				return printJSON(c.App.Writer, map[string]string{"version": version, "commit": commit, "go": runtime.Version()})
			}
			fmt.Fprintf(c.App.Writer, "jobd %s (commit %s, %s)\n", version, commit, runtime.Version())
			return nil
		},
	}
}

// flagsFirst moves flags written after the INSTANCE argument of history
// and trigger in front of it: urfave/cli v2 stops parsing flags at the
// first argument, and `jobd history web --limit 5` is what people type.
// Other commands are left alone (lock's trailing words are its command).
func flagsFirst(app *cli.App, args []string) []string {
	for i, a := range args {
		cmd := app.Command(a)
		if cmd == nil {
			continue
		}
		if cmd.Name != "history" && cmd.Name != "trigger" {
			return args
		}
		takesValue := map[string]bool{}
		for _, f := range cmd.Flags {
			_, isBool := f.(*cli.BoolFlag)
			for _, n := range f.Names() {
				takesValue[n] = !isBool
			}
		}
		var flags, rest []string
		tail := args[i+1:]
		for j := 0; j < len(tail); j++ {
			t := tail[j]
			if t == "--" {
				rest = append(rest, tail[j:]...)
				break
			}
			if !strings.HasPrefix(t, "-") || t == "-" {
				rest = append(rest, t)
				continue
			}
			flags = append(flags, t)
			if name := strings.TrimLeft(t, "-"); !strings.Contains(name, "=") && takesValue[name] && j+1 < len(tail) {
				j++
				flags = append(flags, tail[j])
			}
		}
		out := append(append(append([]string{}, args[:i+1]...), flags...), rest...)
		return out
	}
	return args
}

func main() {
	app := newApp(os.Stdout, os.Stderr)
	err := app.Run(flagsFirst(app, os.Args))
	code, msg := exitCode(err)
	if msg != "" {
		fmt.Fprintln(os.Stderr, msg)
	}
	os.Exit(code)
}
