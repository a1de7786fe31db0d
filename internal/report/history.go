package report

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/jobd/jobd/internal/scheduler"
)

// WriteHistory writes the table of instance's runs that `jobd history`
// prints, newest first; with output, each run's reason and output tail
// follow its row. The rows are aligned first, so that long output does not
// stretch the columns.
func WriteHistory(w io.Writer, instance string, recs []scheduler.Record, output bool) error {
	if len(recs) == 0 {
		_, err := fmt.Fprintf(w, "%s has no runs yet\n", instance)
		return err
	}
	var tab table
	tab.row("SCHEDULED", "RUN ID", "REPLICA", "TRIGGER", "STATUS", "EXIT", "DURATION", "FENCE")
	for _, r := range recs {
		tab.row(r.ScheduledAt.Format(time.RFC3339), r.RunID, r.Replica, r.Trigger, r.Status, Exit(r), RunDuration(r), r.Fence)
	}
	rows := tab.lines()
	fmt.Fprintln(w, rows[0])
	for i, r := range recs {
		fmt.Fprintln(w, rows[i+1])
		if output && r.Reason != "" {
			fmt.Fprintln(w, "  reason: "+r.Reason)
		}
		for _, line := range strings.Split(strings.TrimRight(r.Output, "\n"), "\n") {
			if output && line != "" {
				fmt.Fprintln(w, "  | "+line)
			}
		}
	}
	return nil
}
