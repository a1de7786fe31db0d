package report

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode"

	"github.com/mattn/go-runewidth"
)

// display measures text as a terminal shows it: East Asian wide characters
// (日本語) take two cells, combining marks none. Ambiguous-width characters
// (é, °) count as one, as most terminals draw them whatever the locale, so
// that the layout does not depend on LANG.
var display = &runewidth.Condition{EastAsianWidth: false, StrictEmojiNeutral: true}

// width is the number of terminal cells s takes.
func width(s string) int { return display.StringWidth(s) }

// table lays rows out in columns as text/tabwriter does, but measures
// cells by display width, where tabwriter counts runes (a column holding
// 日本語ジョブ would come out six cells short). Columns are two spaces
// apart; the last cell of a row is not padded, and no line ends in spaces.
type table struct {
	rows [][]string
}

// row adds a row; each cell is printed with fmt.Sprint.
func (t *table) row(cells ...any) {
	r := make([]string, len(cells))
	for i, c := range cells {
		r[i] = visible(fmt.Sprint(c))
	}
	t.rows = append(t.rows, r)
}

// visible writes control characters (a newline, a tab, an escape
// sequence in a lock label or a param) as Go escapes, so that a value can
// neither break the table into fake rows nor drive the terminal.
func visible(s string) string {
	if !strings.ContainsFunc(s, unicode.IsControl) {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		if unicode.IsControl(r) {
			q := strconv.QuoteRune(r)
			b.WriteString(q[1 : len(q)-1])
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// lines returns the rows laid out, without line ends.
func (t *table) lines() []string {
	var widths []int
	for _, r := range t.rows {
		for i, c := range r[:max(len(r)-1, 0)] { // the last cell sets no width
			if i == len(widths) {
				widths = append(widths, 0)
			}
			widths[i] = max(widths[i], width(c))
		}
	}
	out := make([]string, 0, len(t.rows))
	for _, r := range t.rows {
		var b strings.Builder
		for i, c := range r {
			b.WriteString(c)
			if i < len(r)-1 {
				b.WriteString(strings.Repeat(" ", widths[i]-width(c)+2))
			}
		}
		out = append(out, strings.TrimRight(b.String(), " "))
	}
	return out
}

// writeTo writes the rows laid out, one per line.
func (t *table) writeTo(w io.Writer) error {
	for _, l := range t.lines() {
		if _, err := fmt.Fprintln(w, l); err != nil {
			return err
		}
	}
	return nil
}
