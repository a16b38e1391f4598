package shim

import (
	"strings"
	"sync"
	"testing"
	"time"
)

func TestCRIRecords(t *testing.T) {
	var buf strings.Builder
	w := &criWriter{mu: &sync.Mutex{}, out: &buf, stream: "stdout", now: func() time.Time { return time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC) }}
	w.Write([]byte("one\ntwo\npart"))
	recs := ReadLogRecords(strings.NewReader(buf.String()))
	var got string
	for _, r := range recs {
		got += r.Render(false)
	}
	if got != "one\ntwo\npart" || len(recs) != 3 || !recs[2].Partial {
		t.Errorf("records %+v render %q", recs, got)
	}
	if ts := recs[0].Render(true); ts != "2026-01-02T03:04:05.000000006Z one\n" {
		t.Errorf("timestamped %q", ts)
	}
}
