package jobs

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"testing/iotest"
)

// TestStreamLines: the logged lines and the tail are what a maxLine
// bufio.Reader over the whole stream gives (long lines split at maxLine),
// whether the stream is silent, arrives in one piece or byte by byte, and
// with line buffers reused from earlier streams.
func TestStreamLines(t *testing.T) {
	inputs := map[string]string{
		"silent":         "",
		"one byte":       "x",
		"lines":          "a\nb\n\nc",
		"long line":      strings.Repeat("x", 2*maxLine+100) + "\nend\n",
		"exactly maxLen": strings.Repeat("y", maxLine-1) + "\n" + strings.Repeat("z", maxLine) + "\n",
	}
	for name, in := range inputs {
		for _, slow := range []bool{false, true} {
			var r io.Reader = strings.NewReader(in)
			if slow {
				r = iotest.OneByteReader(r)
			}
			var logs bytes.Buffer
			tail := &tailBuffer{}
			budget := &lineBudget{left: 1 << 20, limit: 1 << 20}
			streamLines(r, tail, slog.New(slog.NewTextHandler(&logs, nil)), "stdout", budget)
			if want := wantLines(in); !slices.Equal(loggedLines(t, logs.String()), want) {
				t.Errorf("%s (byte by byte %v): logged %d lines, want %d", name, slow, len(loggedLines(t, logs.String())), len(want))
			}
			if want := in[max(0, len(in)-OutputTail):]; tail.String() != want {
				t.Errorf("%s (byte by byte %v): tail of %d bytes, want %d", name, slow, len(tail.String()), len(want))
			}
		}
	}
}

// wantLines is how the executor read lines before its buffers were pooled.
func wantLines(in string) []string {
	br := bufio.NewReaderSize(strings.NewReader(in), maxLine)
	var out []string
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 {
			out = append(out, strings.TrimSuffix(string(line), "\n"))
		}
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return out
		}
	}
}

// loggedLines reads back the line= values of a text log.
func loggedLines(t *testing.T, logs string) []string {
	t.Helper()
	var out []string
	for _, l := range strings.Split(logs, "\n") {
		if i := strings.Index(l, " line="); i >= 0 {
			v := l[i+len(" line="):]
			if v == `""` {
				v = ""
			} else if strings.HasPrefix(v, `"`) {
				t.Fatalf("a quoted value in this test's input: %s", v)
			}
			out = append(out, v)
		}
	}
	return out
}
