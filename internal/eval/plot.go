package eval

import (
	"fmt"
	"io"
	"math"
	"slices"
	"sort"
	"strings"
)

// WritePlot draws the pairs as an SVG image: the genuine and impostor
// distance histograms (densities, on a log scale so the impostor tail
// shows) and the DET curve (FRR against FAR, both on log axes). The image
// holds scores only, nothing biometric.
func WritePlot(w io.Writer, pairs []Score) error {
	var gen, imp []float64
	for _, p := range pairs {
		if p.Genuine {
			gen = append(gen, p.Score)
		} else {
			imp = append(imp, p.Score)
		}
	}
	if len(gen) == 0 || len(imp) == 0 {
		return fmt.Errorf("eval: plot needs genuine and impostor pairs (have %d and %d)", len(gen), len(imp))
	}
	slices.Sort(gen)
	slices.Sort(imp)
	var b strings.Builder
	const pw, ph, margin = 420.0, 300.0, 50.0
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" font-family="sans-serif" font-size="11">`+"\n", 2*pw+3*margin, ph+2*margin)
	b.WriteString(`<rect width="100%" height="100%" fill="white"/>` + "\n")
	histogram(&b, margin, margin, pw, ph, gen, imp)
	det(&b, 2*margin+pw, margin, pw, ph, gen, imp)
	b.WriteString("</svg>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// histogram draws the densities of both distributions over distance
// 0–0.6, log scale from 1e-4 of the peak.
func histogram(b *strings.Builder, x0, y0, w, h float64, gen, imp []float64) {
	const bins, lo, hi = 60, 0.0, 0.6
	density := func(v []float64) []float64 {
		d := make([]float64, bins)
		for _, s := range v {
			if k := int((s - lo) / (hi - lo) * bins); k >= 0 && k < bins {
				d[k]++
			}
		}
		for k := range d {
			d[k] /= float64(len(v)) * (hi - lo) / bins
		}
		return d
	}
	g, im := density(gen), density(imp)
	top := math.Log10(max(slices.Max(g), slices.Max(im)))
	bottom := top - 5
	y := func(v float64) float64 {
		if v <= 0 {
			return y0 + h
		}
		return y0 + h - h*(math.Log10(v)-bottom)/(top-bottom)
	}
	axes(b, x0, y0, w, h, "distance", "density (log)")
	for i := 0; i <= 6; i++ {
		fmt.Fprintf(b, `<text x="%.1f" y="%.1f" text-anchor="middle">%.1f</text>`+"\n", x0+w*float64(i)/6, y0+h+14, float64(i)/10)
	}
	for _, s := range []struct {
		d     []float64
		color string
		name  string
	}{{g, "#1a7f37", "genuine"}, {im, "#cf222e", "impostor"}} {
		var path strings.Builder
		for k, v := range s.d {
			fmt.Fprintf(&path, "%.1f,%.1f %.1f,%.1f ", x0+w*float64(k)/bins, y(v), x0+w*float64(k+1)/bins, y(v))
		}
		fmt.Fprintf(b, `<polyline fill="none" stroke="%s" stroke-width="1.5" points="%s"/>`+"\n", s.color, path.String())
	}
	fmt.Fprintf(b, `<text x="%.1f" y="%.1f" fill="#1a7f37">genuine (%d)</text>`+"\n", x0+8, y0+14, len(gen))
	fmt.Fprintf(b, `<text x="%.1f" y="%.1f" fill="#cf222e">impostor (%d)</text>`+"\n", x0+8, y0+28, len(imp))
}

// det draws FRR against FAR on log axes from 1/len(imp) to 1.
func det(b *strings.Builder, x0, y0, w, h float64, gen, imp []float64) {
	minFAR := math.Pow(10, math.Floor(math.Log10(1/float64(len(imp)))))
	minFRR := math.Pow(10, math.Floor(math.Log10(1/float64(len(gen)))))
	lx := func(v float64) float64 {
		return x0 + w*(math.Log10(max(v, minFAR))-math.Log10(minFAR))/-math.Log10(minFAR)
	}
	ly := func(v float64) float64 {
		return y0 + h - h*(math.Log10(max(v, minFRR))-math.Log10(minFRR))/-math.Log10(minFRR)
	}
	axes(b, x0, y0, w, h, "FAR (log)", "FRR (log)")
	for e := math.Log10(minFAR); e <= 0; e++ {
		fmt.Fprintf(b, `<text x="%.1f" y="%.1f" text-anchor="middle">1e%.0f</text>`+"\n", lx(math.Pow(10, e)), y0+h+14, e)
	}
	for e := math.Log10(minFRR); e <= 0; e++ {
		fmt.Fprintf(b, `<text x="%.1f" y="%.1f" text-anchor="end">1e%.0f</text>`+"\n", x0-4, ly(math.Pow(10, e))+4, e)
	}
	var path strings.Builder
	// One point per impostor score up to the median, thinned on a log grid.
	last := -1.0
	for k := 0; k < len(imp)/2; k++ {
		far := float64(k+1) / float64(len(imp))
		if math.Log10(far)-last < 0.02 && k > 0 {
			continue
		}
		last = math.Log10(far)
		frr := 1 - float64(sort.SearchFloat64s(gen, math.Nextafter(imp[k], math.Inf(1))))/float64(len(gen))
		fmt.Fprintf(&path, "%.1f,%.1f ", lx(far), ly(frr))
	}
	fmt.Fprintf(b, `<polyline fill="none" stroke="#0969da" stroke-width="1.5" points="%s"/>`+"\n", path.String())
}

func axes(b *strings.Builder, x0, y0, w, h float64, xlabel, ylabel string) {
	fmt.Fprintf(b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="none" stroke="#888"/>`+"\n", x0, y0, w, h)
	fmt.Fprintf(b, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`+"\n", x0+w/2, y0+h+30, xlabel)
	fmt.Fprintf(b, `<text x="%.1f" y="%.1f" text-anchor="middle" transform="rotate(-90 %.1f %.1f)">%s</text>`+"\n",
		x0-34, y0+h/2, x0-34, y0+h/2, ylabel)
}
