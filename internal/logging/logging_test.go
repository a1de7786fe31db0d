package logging

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"
)

// TestNew: the formats and levels, "" as the default, and durations as
// strings in JSON.
func TestNew(t *testing.T) {
	tests := []struct {
		format, level string
		bad           bool
		want          string
	}{
		{"json", "info", false, `"grace":"30s"`},
		{"", "", false, `"grace":"30s"`}, // auto on a buffer: JSON
		{"text", "", false, "grace=30s"},
		{"xml", "", true, ""},
		{"json", "loud", true, ""},
	}
	for _, tt := range tests {
		t.Run(tt.format+"/"+tt.level, func(t *testing.T) {
			var b bytes.Buffer
			log, err := New(&b, tt.format, tt.level)
			if tt.bad {
				if !errors.Is(err, ErrBadSetting) {
					t.Fatalf("err %v, want ErrBadSetting", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			log.Info("x", "grace", 30*time.Second)
			if !strings.Contains(b.String(), tt.want) {
				t.Fatalf("logged %s, want %s", b.String(), tt.want)
			}
		})
	}
}
