// Package logging builds jobd's slog logger from the --log-format and
// --log-level settings, so that every command logs the same way: text on
// a terminal and JSON otherwise (auto), durations as Go duration strings
// in both, and an empty setting counting as unset.
package logging

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
)

// ErrBadSetting: a format or level jobd does not know.
var ErrBadSetting = errors.New("logging: bad setting")

// New returns a logger writing to w in format (text, json, or auto: text
// when w is a terminal, JSON otherwise; "" is auto) at level (debug,
// info, warn or error; "" is info).
func New(w io.Writer, format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(cmp.Or(level, "info"))); err != nil {
		return nil, fmt.Errorf("%w: --log-level: %q is not debug, info, warn or error", ErrBadSetting, level)
	}
	opts := &slog.HandlerOptions{Level: lv, ReplaceAttr: DurationsAsStrings}
	format = cmp.Or(format, "auto")
	if f, ok := w.(*os.File); ok && format == "auto" {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			format = "text"
		}
	}
	switch format {
	case "json", "auto":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("%w: --log-format: %q is not text, json or auto", ErrBadSetting, format)
}

// DurationsAsStrings is a slog ReplaceAttr that logs durations as Go
// duration strings ("30s"), in JSON too, where slog would write
// nanoseconds.
func DurationsAsStrings(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindDuration {
		a.Value = slog.StringValue(a.Value.Duration().String())
	}
	return a
}
