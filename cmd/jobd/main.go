// Command jobd runs cron jobs across several replicas with Redis locks, so
// that every scheduled tick runs exactly once even when a machine dies.
//
// It only wires the internal packages, parses flags, prints and maps
// errors to exit codes: this file for every command, run.go for the
// daemon, lock.go for `jobd lock`, ops.go for the operator commands,
// dashboard.go for `jobd dashboard`.
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"runtime"
	"slices"
	"strings"

	"github.com/redis/go-redis/v9"
	"github.com/urfave/cli/v2"

	"github.com/jobd/jobd/internal/jobs"
	"github.com/jobd/jobd/internal/lockrun"
	"github.com/jobd/jobd/internal/logging"
	"github.com/jobd/jobd/internal/mutex"
	"github.com/jobd/jobd/internal/redisconn"
	"github.com/jobd/jobd/internal/scheduler"
)

// Set by the Makefile with -ldflags -X.
var (
	version = "dev"
	commit  = "unknown"
)

// Exit codes. They are documented in `jobd --help` and the README; scripts
// and monitoring rely on them, so never renumber one. A run's own code
// (`jobd trigger --wait`) is scheduler.Record.ShellCode; a command `jobd
// lock` could not start exits with jobs.StartError's Code (126 or 127).
const (
	exitOK          = 0
	exitFailure     = 1  // generic failure (for example an invalid config)
	exitUsage       = 2  // bad flags or arguments
	exitNoReplica   = 3  // no replica is alive (status, trigger)
	exitUnavailable = 69 // Redis unreachable (EX_UNAVAILABLE)
	exitLeaseLost   = 70 // the lock's lease was lost while the command ran
	exitNotObtained = 75 // lock not obtained within --wait (EX_TEMPFAIL)
	exitConfig      = 78 // Redis refused: configuration or permission error (EX_CONFIG)
)

const exitCodesHelp = `EXIT CODES:
   0     success (jobd lock, trigger --wait: the command's own exit code is passed through)
   1     generic failure
   2     bad flags or arguments, no command or an unknown one, or unknown instance
   3     no replica is alive (status, trigger)
   69    Redis unreachable
   70    lease lost while the command ran (lock), or the run was lock_lost or
         abandoned (trigger --wait)
   75    lock not obtained within --wait (lock), or the run was skipped (trigger --wait)
   78    Redis refused: configuration or permission error (NOPERM, wrong
         password, database out of range); Redis's own message is shown
   124   the run timed out (trigger --wait)
   126   command could not be started
   127   command not found
   128+N command killed by signal N, or (lock) signal N ended the wait for the
         lock and the command was not run`

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

// exitCode maps err to an exit code and the message to print: the code
// an exitError carries, or the code of the kind of error a library
// returned. A silent exit (the child's own code) has a nil inner error.
func exitCode(err error) (int, string) {
	var ee *exitError
	var se *jobs.StartError
	var ie *lockrun.InterruptedError
	code := exitUsage // anything else comes from flag parsing in urfave/cli
	switch {
	case err == nil:
		return exitOK, ""
	case errors.As(err, &ee) && ee.err == nil:
		return ee.code, ""
	case errors.As(err, &ee) && ee.plain:
		return ee.code, ee.err.Error()
	case errors.As(err, &ee):
		code = ee.code
	case errors.As(err, &se):
		code = se.Code
	case errors.As(err, &ie):
		code = ie.Code()
	case errors.Is(err, redisconn.ErrRefused):
		code = exitConfig
	case errors.Is(err, redisconn.ErrUnreachable):
		code = exitUnavailable
	case errors.Is(err, lockrun.ErrNotObtained):
		code = exitNotObtained
	case errors.Is(err, lockrun.ErrLeaseLost):
		code = exitLeaseLost
	}
	return code, "jobd: " + err.Error()
}

func newApp(stdout, stderr io.Writer) *cli.App {
	return shortUsageErrors(&cli.App{
		Name:    "jobd",
		Usage:   "run cron jobs once across replicas, with Redis locks",
		Version: version,
		Description: "Several identical jobd replicas read one schedule; on every tick each tries to\n" +
			"claim it in Redis and only the winner runs the job. `jobd lock` runs one command\n" +
			"under the same locks, like flock(1) across machines.",
		Writer:                 stdout,
		ErrWriter:              stderr,
		Flags:                  globalFlags(),
		UseShortOptionHandling: true,
		Commands: noStrayArgs(runCommand(), lockCommand(), validateCommand(), planCommand(),
			statusCommand(), historyCommand(), triggerCommand(), dashboardCommand(), versionCommand()),
		CustomAppHelpTemplate: cli.AppHelpTemplate + "\n" + exitCodesHelp + "\n",
		ExitErrHandler:        func(*cli.Context, error) {}, // main maps errors to codes
		// A bad --log-format or --log-level is a usage error for every
		// command, also those that log nothing (validate, plan).
		Before: func(c *cli.Context) error {
			_, err := logging.New(io.Discard, c.String("log-format"), c.String("log-level"))
			return badLogSetting(err)
		},
		Action: noCommand,
	})
}

// badLogSetting is a bad log flag as a usage error (nil stays nil).
func badLogSetting(err error) error {
	if err == nil {
		return nil
	}
	return usagef("jobd", "%s", strings.TrimPrefix(err.Error(), logging.ErrBadSetting.Error()+": "))
}

// shortUsageErrors makes a flag the app or a command cannot parse (`jobd
// status --nope`, a missing value, a bad number) a usage error of one
// line and a hint, exit 2, where urfave/cli prints the whole help.
func shortUsageErrors(app *cli.App) *cli.App {
	app.OnUsageError = usageError("jobd")
	for _, cmd := range app.Commands {
		cmd.OnUsageError = usageError("jobd " + cmd.Name)
	}
	return app
}

func usageError(cmd string) cli.OnUsageErrorFunc {
	return func(_ *cli.Context, err error, _ bool) error { return usagef(cmd, "%w", err) }
}

// usagef is a usage error (exit 2): "jobd: MESSAGE", then a hint to
// run cmd's help.
func usagef(cmd, format string, args ...any) error {
	return &exitError{code: exitUsage, plain: true, err: fmt.Errorf("jobd: "+format+"\nrun '%s --help'", append(args, cmd)...)}
}

// noCommand answers `jobd` without a command (or with an unknown one): a
// short usage, exit 2. `jobd help` and `jobd --help` print the whole
// help and exit 0.
func noCommand(c *cli.Context) error {
	var names []string
	for _, cmd := range c.App.VisibleCommands() {
		if cmd.Name != "help" {
			names = append(names, cmd.Name)
		}
	}
	if c.NArg() > 0 {
		return usagef("jobd", "unknown command %q (commands: %s)", c.Args().First(), strings.Join(names, ", "))
	}
	return &exitError{code: exitUsage, plain: true, err: fmt.Errorf("usage: jobd [global flags] COMMAND [flags] [ARGS]\n"+
		"commands: %s\nrun 'jobd --help' for the flags and exit codes, 'jobd COMMAND --help' for a command", strings.Join(names, ", "))}
}

// noStrayArgs makes the commands that take no arguments refuse them
// (`jobd validate extra` is a typo, not a request), with exit 2.
func noStrayArgs(cmds ...*cli.Command) []*cli.Command {
	for _, cmd := range cmds {
		if cmd.ArgsUsage != "" {
			continue
		}
		cmd.Before = func(c *cli.Context) error {
			if c.NArg() > 0 {
				return usagef("jobd "+c.Command.Name, "%s takes no arguments, got %q", c.Command.Name, c.Args().Slice())
			}
			return nil
		}
	}
	return cmds
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

// flagsFirst lets people type flags where they do, although urfave/cli
// v2 reads global flags only before the command and a command's flags
// only before its first argument:
//   - a global flag (--config/-c, --redis, --prefix, --log-format,
//     --log-level) written after the command moves in front of it;
//   - a command's own flag written after an argument (`jobd history web
//     --limit 5`) moves in front of the arguments.
//
// Nothing after "--" moves, nor anything after lock's first argument
// that is not a lock flag: those words are lock's command. A flag that
// takes a value but ends the line keeps nothing after it, so that it is
// reported as missing its value (`jobd trigger web --timeout`), not
// given the next word as one.
func flagsFirst(app *cli.App, args []string) []string {
	i := slices.IndexFunc(args, func(a string) bool { return app.Command(a) != nil })
	if i < 0 {
		return args
	}
	cmd := app.Command(args[i])
	global, local := flagArity(app.Flags), flagArity(cmd.Flags)
	var globals, flags, rest []string
	positional := 0
	for j := i + 1; j < len(args); j++ {
		t := args[j]
		name, _, hasValue := strings.Cut(strings.TrimLeft(t, "-"), "=")
		takes, isLocal := local[name]
		takesG, isGlobal := global[name]
		switch {
		case t == "--" || (cmd.Name == "lock" && positional >= 1 && !isLocal):
			rest, j = append(rest, args[j:]...), len(args)
		case !strings.HasPrefix(t, "-") || t == "-":
			rest = append(rest, t)
			positional++
		case isLocal || !isGlobal: // unknown flags stay with the command, which reports them
			flags = append(flags, t)
			if takes && !hasValue && j+1 == len(args) {
				return slices.Concat(args[:i], globals, args[i:i+1], flags)
			}
			if takes && !hasValue {
				j++
				flags = append(flags, args[j])
			}
		default:
			globals = append(globals, t)
			if takesG && !hasValue && j+1 == len(args) {
				return slices.Concat(args[:i], globals)
			}
			if takesG && !hasValue {
				j++
				globals = append(globals, args[j])
			}
		}
	}
	return slices.Concat(args[:i], globals, args[i:i+1], flags, rest)
}

// flagArity maps each name of fs to whether it takes a value.
func flagArity(fs []cli.Flag) map[string]bool {
	out := map[string]bool{}
	for _, f := range fs {
		_, isBool := f.(*cli.BoolFlag)
		for _, n := range f.Names() {
			out[n] = !isBool
		}
	}
	return out
}

func main() {
	app := newApp(os.Stdout, os.Stderr)
	code, msg := exitCode(app.Run(flagsFirst(app, os.Args)))
	if msg != "" {
		fmt.Fprintln(os.Stderr, msg)
	}
	os.Exit(code)
}

// defaultConfig is the schedule file read when --config is not given.
const defaultConfig = "/etc/jobd/jobs.yaml"

func globalFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "redis", Value: redisconn.DefaultURL, EnvVars: []string{"JOBD_REDIS_URL"},
			Usage: "Redis URL: redis://, rediss:// (TLS), unix://, a Sentinel URL (?master_name=) or redis+cluster://, with user and password if needed; wins over the schedule file's redis: section (refused when that names a quorum)"},
		&cli.StringFlag{Name: "config", Aliases: []string{"c"}, Value: defaultConfig, EnvVars: []string{"JOBD_CONFIG"},
			Usage: "the schedule file (see jobs.example.yaml)"},
		&cli.StringFlag{Name: "prefix", Value: mutex.DefaultPrefix, EnvVars: []string{"JOBD_PREFIX"},
			Usage: "prefix of every Redis key jobd uses"},
		&cli.StringFlag{Name: "log-format", Value: "auto", EnvVars: []string{"JOBD_LOG_FORMAT"},
			Usage: "text, json, or auto (text on a terminal, JSON otherwise)"},
		&cli.StringFlag{Name: "log-level", Value: "info", EnvVars: []string{"JOBD_LOG_LEVEL"},
			Usage: "debug, info, warn or error"},
	}
}

// newLogger builds the slog logger from the global flags, and sends
// go-redis's own messages to it.
func newLogger(c *cli.Context) (*slog.Logger, error) {
	log, err := logging.New(c.App.ErrWriter, c.String("log-format"), c.String("log-level"))
	if err != nil {
		return nil, badLogSetting(err)
	}
	redisconn.SetLogger(log)
	return log, nil
}

// loadConfig loads the schedule file, --config (or JOBD_CONFIG; empty
// counts as unset), else the default file; problems are exit 1, one per
// line. With optional (lock, status, history work without a file, but
// must find its redis: settings), a missing default file is nil, nil.
func loadConfig(c *cli.Context, optional bool) (*jobs.Config, error) {
	path, explicit := defaultConfig, c.IsSet("config") && c.String("config") != ""
	if explicit {
		path = c.String("config")
	}
	if _, err := os.Stat(path); optional && !explicit && errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	cfg, err := jobs.Load(path)
	var ps jobs.Problems
	switch {
	case errors.As(err, &ps):
		return nil, &exitError{code: exitFailure, plain: true, err: fmt.Errorf("%w\n%d problem(s) in %s", err, len(ps), path)}
	case !explicit && errors.Is(err, fs.ErrNotExist):
		return nil, exitf(exitFailure, "%w (the default schedule file; name yours with -c FILE or JOBD_CONFIG)", err)
	case err != nil:
		return nil, exitf(exitFailure, "%w", err)
	}
	return cfg, nil
}

// openRedis returns the clients, which have not talked to Redis yet, for
// the Redis and key prefix of every command: --redis and --prefix (or
// their environment variables), then cfg's redis:, then the defaults (see
// redisconn.Resolve). There is one client, or one per master of a
// quorum. A bad URL is exit 2.
func openRedis(c *cli.Context, cfg *jobs.Config) (redisconn.Target, nodes, error) {
	given := func(flag string) string {
		if c.IsSet(flag) {
			return c.String(flag)
		}
		return ""
	}
	if given("redis") != "" && cfg != nil && cfg.Redis.Quorum != nil {
		// A URL would reach one of the masters (or another Redis) alone:
		// replicas started with it and without it would each claim every
		// tick on their own.
		return redisconn.Target{}, nil, exitf(exitUsage, "--redis (or JOBD_REDIS_URL) is set, and %s names a quorum of masters (redis.quorum): a URL would bypass the quorum and let this process claim ticks and locks apart from the other replicas; unset one of them", cfg.File)
	}
	t := redisconn.Resolve(redisconn.Target{URL: given("redis"), Prefix: given("prefix")}, cfg)
	ns, err := t.OpenNodes()
	if err != nil {
		from := "--redis (or JOBD_REDIS_URL)"
		if given("redis") == "" {
			from = "the schedule file's redis: section"
		}
		return t, nil, exitf(exitUsage, "%s: %s: %v", from, t, err)
	}
	return t, ns, nil
}

// nodes are the clients of a Target: one, or one per master of a quorum.
type nodes []redis.UniversalClient

// locks is the mutex client on the nodes (a quorum's when there are
// several), with the options every command gives it.
func (ns nodes) locks(t redisconn.Target, log *slog.Logger, opts ...mutex.ClientOption) *mutex.Client {
	return mutex.NewQuorum(ns, append([]mutex.ClientOption{mutex.WithPrefix(t.Prefix), mutex.WithLogger(log),
		mutex.WithReplicaWait(t.Redis.ReplicaWait())}, opts...)...)
}

// store is the scheduler's store on the nodes.
func (ns nodes) store(t redisconn.Target) *scheduler.Store {
	return scheduler.NewQuorumStore(ns, t.Prefix)
}

func (ns nodes) close() {
	for _, rdb := range ns {
		rdb.Close()
	}
}

// env is what the commands that talk to Redis (lock, status, history,
// trigger) share: the logger, the schedule file (cfg is nil without one),
// the Redis and key prefix, and the clients on them.
type env struct {
	log    *slog.Logger
	cfg    *jobs.Config
	path   string
	target redisconn.Target
	nodes  nodes
	locks  *mutex.Client
	store  *scheduler.Store
	insp   *scheduler.Inspector
}

// connect loads the schedule file (optional unless needConfig) and
// connects to Redis: exit 69 if it does not answer, 78 if it refuses jobd.
func connect(c *cli.Context, needConfig bool) (*env, error) {
	e, err := openEnv(c, needConfig)
	if err != nil {
		return nil, err
	}
	if err := e.target.Ping(c.Context, e.nodes); err != nil {
		e.close()
		return nil, err
	}
	return e, nil
}

// openEnv is connect without the check that Redis answers, for a command
// that starts (and waits) while Redis is down: jobd dashboard.
func openEnv(c *cli.Context, needConfig bool) (*env, error) {
	log, err := newLogger(c)
	if err != nil {
		return nil, err
	}
	e := &env{log: log, path: defaultConfig}
	if e.cfg, err = loadConfig(c, !needConfig); err != nil {
		return nil, err // every problem, as `jobd validate` prints them
	}
	if e.cfg != nil {
		e.path = e.cfg.File
	}
	if e.target, e.nodes, err = openRedis(c, e.cfg); err != nil {
		return nil, err
	}
	e.locks = e.nodes.locks(e.target, log)
	e.store = e.nodes.store(e.target)
	e.insp = scheduler.NewInspector(e.store)
	return e, nil
}

func (e *env) close() {
	e.locks.Close()
	e.store.Close()
	e.nodes.close()
}

// printJSON writes v as indented JSON: the --json output of every command.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
