package eval

import (
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/palmd/palmd/template"
)

// WriteText prints the report for a person.
func (r *Report) WriteText(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "images read            %d (%d identities)\n", r.Images, r.Identities)
	fmt.Fprintf(&b, "extracted              %d   failure to extract %.2f%%\n", r.Extracted, 100*r.FTE)
	if len(r.Failures) > 0 {
		gates := make([]string, 0, len(r.Failures))
		for g := range r.Failures {
			gates = append(gates, g)
		}
		sort.Strings(gates)
		for _, g := range gates {
			fmt.Fprintf(&b, "  failed %-15s %d\n", g, r.Failures[g])
		}
	}
	fmt.Fprintf(&b, "genuine / impostor     %d / %d pairs\n", r.All.Genuine, r.Impostor)
	writeFigures(&b, "", "all genuine pairs", r.Summary, r.Model, r.Thresholds)
	if e := r.Entries; e != nil {
		fmt.Fprintf(&b, "against fused entries  %d entries (each session's samples fused, as the matcher enrols); %d genuine / %d impostor comparisons\n",
			e.Entries, e.All.Genuine, e.Impostor)
		writeFigures(&b, "  ", "all genuine", e.Summary, e.Model, e.Thresholds)
	}
	fmt.Fprintf(&b, "median extraction      %.2f ms per image\n", r.MedianExtractMS)
	fmt.Fprintf(&b, "median comparison      %.2f µs per pair\n", r.MedianCompareUS)
	if p := r.Placement; p != nil {
		fmt.Fprintf(&b, "ROI placement vs truth offset median %.2f mm (p95 %.2f), |rotation| median %.2f° (p95 %.2f), |scale| median %.3f, mirrored %d\n",
			p.MedianOffsetMM, p.P95OffsetMM, p.MedianRotation, p.P95Rotation, p.MedianScale, p.Mirrored)
		fmt.Fprintf(&b, "ROI consistency        %.2f mm, %.2f° RMS within identities\n", p.ConsistencyMM, p.ConsistencyDeg)
	}
	if len(r.Worst) > 0 {
		fmt.Fprintf(&b, "worst genuine pairs:\n")
		byFile := map[string]*Image{}
		for i := range r.Files {
			byFile[r.Files[i].File] = &r.Files[i]
		}
		for _, p := range r.Worst {
			fmt.Fprintf(&b, "  %.4f %s %s cross=%v  %s | %s\n", p.Score, p.A, p.B, p.Cross, describe(byFile[p.A]), describe(byFile[p.B]))
		}
	}
	var failed []Image
	for _, f := range r.Files {
		if f.Gate != "ok" {
			failed = append(failed, f)
		}
	}
	if len(failed) > 0 {
		fmt.Fprintf(&b, "failures to extract:\n")
		for _, f := range failed {
			fmt.Fprintf(&b, "  %s  %s\n", f.File, f.Reason)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func describe(img *Image) string {
	if img == nil {
		return ""
	}
	s := fmt.Sprintf("q%d", img.Quality)
	if p := img.Placement; p != nil {
		s += fmt.Sprintf(" roi %+.1f,%+.1fmm %+.1f° %+.0f%%", p.DX, p.DY, p.Rotation, 100*p.Scale)
		if p.Mirrored {
			s += " MIRRORED"
		}
	}
	return s
}

// writeFigures prints a summary's rates (all genuine comparisons, then
// within and across sessions), its impostor distribution, fitted model
// and thresholds, each line led by indent.
func writeFigures(b *strings.Builder, indent, all string, s Summary, m *template.ImpostorModel, ths []Threshold) {
	pad := func(label string) string {
		return indent + label + strings.Repeat(" ", max(1, 22-len(indent)-len(label)))
	}
	writeRates(b, indent+all, s.All)
	if s.Same != nil {
		writeRates(b, indent+"same session", *s.Same)
		writeRates(b, indent+"across sessions", *s.Cross)
	}
	fmt.Fprintf(b, "%s%.4f ± %.4f   lowest %.4f (%.1f σ below the mean)\n", pad("impostor score"), s.ImpMean, s.ImpStd, s.ImpMin, s.ImpMinSigma)
	if m != nil {
		fmt.Fprintf(b, "%s binomial body, %.0f degrees of freedom; exponential tail below %.4f (FAR %.0e), scale %.4f\n",
			pad("impostor model"), m.DegreesOfFreedom, m.TailStart, m.TailFAR, m.TailScale)
	}
	for _, t := range ths {
		fmt.Fprintf(b, "%sthreshold at FAR %-6g %.4f  (%s)  FRR %.2f%%\n", indent, t.FAR, t.Threshold, t.Source, 100*t.FRR)
	}
}

func writeRates(b *strings.Builder, name string, r Rates) {
	fmt.Fprintf(b, "%-22s %6d pairs  EER %.3f%% (thr %.4f)  d' %.2f  genuine %.4f ± %.4f", name, r.Genuine, 100*r.EER, r.Threshold, r.DPrime, r.GenMean, r.GenStd)
	for _, k := range []string{"0.01", "0.001", "0.0001", "1e-05"} {
		if v, ok := r.FRRAtFAR[k]; ok {
			fmt.Fprintf(b, "  FRR@FAR%s %.2f%%", k, 100*v)
		}
	}
	fmt.Fprintln(b)
}
