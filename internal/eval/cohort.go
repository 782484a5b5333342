package eval

import (
	"context"
	"fmt"
	"io"
)

// WriteCohort extracts every image of o.Dir and writes the templates, in
// file order, in wire format one after another: template's reference
// cohort (template/cohort.bin; make cohort). It returns how many were
// written. Templates are biometric data: run it on synthetic sets only.
func WriteCohort(ctx context.Context, o Options, w io.Writer) (int, error) {
	imgs, _, err := load(ctx, o)
	if err != nil {
		return 0, err
	}
	defer wipeAll(imgs)
	n := 0
	for i := range imgs {
		t := imgs[i].tpl
		if t == nil {
			continue
		}
		// The cohort is the offsets' reference: its own are zero.
		t.Offset = 0
		b, err := t.MarshalBinary()
		if err != nil {
			return n, fmt.Errorf("eval: cohort: %w", err)
		}
		_, err = w.Write(b)
		clear(b)
		if err != nil {
			return n, fmt.Errorf("eval: cohort: %w", err)
		}
		n++
	}
	return n, nil
}
