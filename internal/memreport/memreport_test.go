package memreport

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// TestRunReportsEveryPhase: the report measures every phase with figures
// that hang together (the parts within the whole). The figures themselves
// are make memory's business: this test binary links all of OpenCV.
func TestRunReportsEveryPhase(t *testing.T) {
	rows, err := Run(context.Background(), Options{Frames: 20, Trim: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 4 {
		t.Fatalf("%d phases", len(rows))
	}
	for _, r := range rows {
		if r.RSS == 0 || r.Anon+r.File > r.RSS+(1<<20) || r.Anon > r.RSS || r.GoTotal == 0 {
			t.Errorf("%s: implausible %+v", r.Name, r.Snapshot)
		}
	}
	if rows[1].CInUse <= rows[0].CInUse {
		t.Errorf("the renderer's textures are not in the C heap: %d then %d bytes", rows[0].CInUse, rows[1].CInUse)
	}
	var b bytes.Buffer
	if err := Write(&b, rows); err != nil || !strings.Contains(b.String(), "hardware mode") {
		t.Fatalf("table: %v\n%s", err, b.String())
	}
}
