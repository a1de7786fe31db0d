package jobs

import (
	"errors"
	"fmt"
	"sort"
	"strings"
)

// ErrInvalid matches every validation failure (errors.Is).
var ErrInvalid = errors.New("jobs: invalid config")

// Problem is one validation problem, printed as
// FILE:LINE:COL: PATH: MESSAGE (LINE and COL when known).
type Problem struct {
	File      string
	Line, Col int
	Path      string // jobs[2].schedule
	Msg       string
}

// String formats the problem for editors: FILE:LINE:COL: PATH: MESSAGE.
func (p Problem) String() string {
	var b strings.Builder
	b.WriteString(p.File)
	if p.Line > 0 {
		fmt.Fprintf(&b, ":%d", p.Line)
		if p.Col > 0 {
			fmt.Fprintf(&b, ":%d", p.Col)
		}
	}
	b.WriteString(": ")
	if p.Path != "" {
		b.WriteString(p.Path + ": ")
	}
	b.WriteString(p.Msg)
	return b.String()
}

// Problems is every problem found in one file; it is the error Parse and
// Load return, and it matches ErrInvalid.
type Problems []Problem

// Error lists every problem, one per line.
func (ps Problems) Error() string {
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// Is makes errors.Is(err, ErrInvalid) true.
func (ps Problems) Is(target error) bool { return target == ErrInvalid }

// sorted orders problems by position and drops exact repeats.
func (ps Problems) sorted() Problems {
	sort.SliceStable(ps, func(i, j int) bool {
		if ps[i].Line != ps[j].Line {
			return ps[i].Line < ps[j].Line
		}
		return ps[i].Col < ps[j].Col
	})
	out := ps[:0]
	for i, p := range ps {
		if i == 0 || p != ps[i-1] {
			out = append(out, p)
		}
	}
	return out
}
