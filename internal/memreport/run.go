package memreport

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/palmd/palmd/imaging"
	"github.com/palmd/palmd/internal/cmalloc"
	"github.com/palmd/palmd/sensor"
	"github.com/palmd/palmd/sensor/sim"
)

// Options configure Run.
type Options struct {
	// Frames is how many frames the pipeline phase processes (about 20 s
	// at 30 fps by default).
	Frames int
	// Trim returns free C heap to the kernel after every presentation's
	// worth of frames, as palmd does.
	Trim bool
}

// Phase is one row of the report.
type Phase struct {
	Name string
	Snapshot
}

// Run measures palmd's memory phase by phase in this process and returns
// the rows: the libraries alone; the simulator rendering a scene with a
// hand; after the renderer is closed; the capture pipeline (presence and
// extraction on recorded frames, as on a terminal's camera) in steady
// state.
func Run(ctx context.Context, o Options) ([]Phase, error) {
	if o.Frames == 0 {
		o.Frames = 600
	}
	var rows []Phase
	take := func(name string) error {
		s, err := Take()
		rows = append(rows, Phase{name, s})
		return err
	}
	if err := take("libraries loaded"); err != nil {
		return nil, err
	}
	scen := &sim.Scenario{Loop: true, Steps: []sim.Step{{Kind: sim.StepPresent, Identity: 5, Approach: 4, Hold: 40, Withdraw: 4}}}
	s, err := sim.New(sim.Config{Scenario: scen})
	if err != nil {
		return nil, err
	}
	dev := s.Device()
	if err := dev.Camera.Start(ctx); err != nil {
		dev.Close()
		return nil, err
	}
	// Recorded frames: lit and unlit pairs of a hand held still, copied
	// out of the renderer.
	var lit, unlit []sensor.Frame
	for i := 0; i < 40; i++ {
		for _, level := range []int{100, 0} {
			if level > 0 {
				err = dev.Illuminator.On(level)
			} else {
				err = dev.Illuminator.Off()
			}
			if err != nil {
				dev.Close()
				return nil, err
			}
			f, err := dev.Camera.NextFrame(ctx)
			if err != nil {
				dev.Close()
				return nil, err
			}
			c := f                  // the caller's to keep (sensor.Frame)
			if i >= 8 && i%4 == 0 { // the hand is in view and still
				if level > 0 {
					lit = append(lit, c)
				} else {
					unlit = append(unlit, c)
				}
			}
		}
	}
	if err := take("simulator rendering"); err != nil {
		return nil, err
	}
	if err := dev.Close(); err != nil {
		return nil, err
	}
	s = nil
	if o.Trim {
		cmalloc.Trim()
	}
	if err := take("renderer closed"); err != nil {
		return nil, err
	}
	pres := imaging.NewPresenceDetector(imaging.DefaultPresenceConfig())
	defer pres.Close()
	ext := imaging.NewExtractor(imaging.DefaultConfig())
	defer ext.Close()

	for i := 0; i < o.Frames; i++ {
		k := i % len(lit)
		if i%2 == 0 {
			if _, err := pres.Check(&lit[k], &unlit[k]); err != nil {
				return nil, err
			}
		} else if r, err := ext.Extract(&lit[k], nil); err == nil {
			r.Template.Zero()
		}
		if o.Trim && i%30 == 29 {
			cmalloc.Trim()
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
	}

	if err := take(fmt.Sprintf("pipeline, %d frames (hardware mode)", o.Frames)); err != nil {
		return nil, err
	}
	return rows, nil
}

// Write prints the rows as a table in MiB.
func Write(w io.Writer, rows []Phase) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "phase\tresident\tanonymous\tfiles (libraries)\tGo heap\tGo held\tC heap in use\tC heap held\t")
	mib := func(b uint64) string { return fmt.Sprintf("%.1f", float64(b)/(1<<20)) }
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", r.Name, mib(r.RSS), mib(r.Anon), mib(r.File), mib(r.GoHeap), mib(r.GoTotal), mib(r.CInUse), mib(r.CHeld))
	}
	return tw.Flush()
}
