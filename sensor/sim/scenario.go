package sim

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
)

// StepKind names what happens during one step of a scenario.
type StepKind string

// The step kinds.
const (
	// StepEmpty: nothing over the sensor.
	StepEmpty StepKind = "empty"
	// StepPresent: a hand approaches, holds still, withdraws.
	StepPresent StepKind = "present"
	// StepPartial: a hand held half outside the field of view.
	StepPartial StepKind = "partial"
	// StepMoving: a hand that sweeps across the view without settling.
	StepMoving StepKind = "moving"
	// StepPhoto: a printed photograph of a palm held like a hand (the
	// print species: flat or curved, cut out or whole).
	StepPhoto StepKind = "photo"
	// StepVeinPrint: a print of a contrast-enhanced vein image.
	StepVeinPrint StepKind = "vein_print"
	// StepScreen: a phone showing a palm photograph.
	StepScreen StepKind = "screen"
	// StepReplica: a cast silicone or wax hand.
	StepReplica StepKind = "replica"
)

// Species is the attack species a step presents (BonaFide for a hand or
// an empty scene).
func (k StepKind) Species() Species {
	switch k {
	case StepPhoto:
		return AttackPrint
	case StepVeinPrint:
		return AttackVeinPrint
	case StepScreen:
		return AttackScreen
	case StepReplica:
		return AttackReplica
	}
	return BonaFide
}

// Step is one segment of a scenario. For every kind but empty, the hand
// comes in over Approach frames, stays for Hold frames and leaves over
// Withdraw frames; for empty, nothing is seen for Hold frames.
type Step struct {
	Kind StepKind `json:"kind"`
	// Identity is the seed of the person presenting (any number).
	Identity uint64 `json:"identity,omitempty"`
	// Session and Sample pick the presentation (pose, spread, lighting)
	// as Variation.Sample does: a new session is "a month later".
	Session int `json:"session,omitempty"`
	Sample  int `json:"sample,omitempty"`
	// Frame counts.
	Approach int `json:"approach,omitempty"`
	Hold     int `json:"hold"`
	Withdraw int `json:"withdraw,omitempty"`
	// Label is free text carried to the truth of each frame (for example
	// the name a demo prints).
	Label string `json:"label,omitempty"`
}

// Frames is the step's length in frames.
func (s Step) Frames() int { return s.Approach + s.Hold + s.Withdraw }

// Scenario is a scripted timeline of presentations.
type Scenario struct {
	// Loop restarts the scenario when it ends; otherwise the scene stays
	// empty afterwards.
	Loop  bool   `json:"loop,omitempty"`
	Steps []Step `json:"steps"`
}

// Limits that keep a scenario file from asking for absurd work.
const (
	maxSteps      = 10000
	maxStepFrames = 1 << 20
	maxScenario   = 1 << 20 // bytes
)

// ParseScenario reads a JSON scenario strictly: unknown fields, trailing
// data, unknown kinds and out-of-range counts are errors.
func ParseScenario(r io.Reader) (*Scenario, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxScenario+1))
	if err != nil {
		return nil, fmt.Errorf("sim: reading scenario: %w", err)
	}
	if len(data) > maxScenario {
		return nil, fmt.Errorf("sim: scenario larger than %d bytes", maxScenario)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var s Scenario
	if err := dec.Decode(&s); err != nil {
		return nil, fmt.Errorf("sim: scenario: %w", err)
	}
	if dec.More() {
		return nil, errors.New("sim: scenario: trailing data after the JSON object")
	}
	if err := s.Validate(); err != nil {
		return nil, err
	}
	return &s, nil
}

// Validate checks every step.
func (s *Scenario) Validate() error {
	if len(s.Steps) == 0 {
		return errors.New("sim: scenario has no steps")
	}
	if len(s.Steps) > maxSteps {
		return fmt.Errorf("sim: scenario has %d steps, at most %d allowed", len(s.Steps), maxSteps)
	}
	for i, st := range s.Steps {
		switch st.Kind {
		case StepEmpty, StepPresent, StepPartial, StepMoving, StepPhoto, StepVeinPrint, StepScreen, StepReplica:
		default:
			return fmt.Errorf("sim: scenario step %d: unknown kind %q (want empty, present, partial, moving, photo, vein_print, screen or replica)", i+1, st.Kind)
		}
		for _, n := range []struct {
			name string
			v    int
		}{{"approach", st.Approach}, {"hold", st.Hold}, {"withdraw", st.Withdraw}, {"session", st.Session}, {"sample", st.Sample}} {
			if n.v < 0 || n.v > maxStepFrames {
				return fmt.Errorf("sim: scenario step %d: %s %d outside 0..%d", i+1, n.name, n.v, maxStepFrames)
			}
		}
		if st.Frames() == 0 {
			return fmt.Errorf("sim: scenario step %d: no frames (set hold)", i+1)
		}
		if st.Kind == StepEmpty && (st.Approach != 0 || st.Withdraw != 0) {
			return fmt.Errorf("sim: scenario step %d: an empty step has only hold frames", i+1)
		}
	}
	return nil
}

// Len is the scenario's length in frames.
func (s *Scenario) Len() int {
	n := 0
	for _, st := range s.Steps {
		n += st.Frames()
	}
	return n
}

// farDistance is where an approaching hand starts and a withdrawing hand
// ends: too far to be usable, small and dark.
const farDistance = 420.0

// Moment is the scene at one frame of a scenario.
type Moment struct {
	// Presentation is nil when nothing is over the sensor.
	Presentation *Presentation
	// Motion is the hand's movement since the previous frame, pixels.
	Motion [2]float64
	// Step is the index of the scenario step (−1 after the end).
	Step  int
	Label string
	// Holding reports the hold phase of a step with a hand.
	Holding bool
}

// Timeline turns a scenario into the scene at each frame.
type Timeline struct {
	scen          *Scenario
	variation     Variation
	width, height int
	ids           map[uint64]*Identity
	starts        []int
	total         int
	fps           float64 // frame rate, for the hand's tremor and pulse
}

// NewTimeline prepares s for width×height frames with variation v.
func NewTimeline(s *Scenario, v Variation, width, height int) (*Timeline, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	t := &Timeline{scen: s, variation: v, width: width, height: height, ids: map[uint64]*Identity{}, fps: DefaultFPS}
	for _, st := range s.Steps {
		t.starts = append(t.starts, t.total)
		t.total += st.Frames()
	}
	return t, nil
}

// Len is the number of frames in one pass of the scenario.
func (t *Timeline) Len() int { return t.total }

// Ended reports whether frame is past the end of a non-looping scenario.
func (t *Timeline) Ended(frame int) bool { return !t.scen.Loop && frame >= t.total }

func (t *Timeline) identity(seed uint64) *Identity {
	id, ok := t.ids[seed]
	if !ok {
		id = NewIdentity(seed)
		t.ids[seed] = id
	}
	return id
}

// At returns the scene at frame (0-based).
func (t *Timeline) At(frame int) Moment {
	if frame < 0 || t.Ended(frame) {
		return Moment{Step: -1}
	}
	frame %= t.total
	si := 0
	for si+1 < len(t.starts) && t.starts[si+1] <= frame {
		si++
	}
	st := t.scen.Steps[si]
	m := Moment{Step: si, Label: st.Label}
	if st.Kind == StepEmpty {
		return m
	}
	k := frame - t.starts[si]
	p := t.poseAt(st, k)
	prev := t.poseAt(st, max(0, k-1))
	m.Presentation = &p
	m.Motion = [2]float64{p.Pose.X - prev.Pose.X, p.Pose.Y - prev.Pose.Y}
	m.Holding = k >= st.Approach && k < st.Approach+st.Hold
	return m
}

// poseAt computes the presentation k frames into step st.
func (t *Timeline) poseAt(st Step, k int) Presentation {
	id := t.identity(st.Identity)
	p := t.variation.Sample(id, st.Session, st.Sample, t.width, t.height)
	target := p.Pose
	w, h := float64(t.width), float64(t.height)
	switch st.Kind {
	case StepPhoto, StepVeinPrint, StepScreen, StepReplica:
		p.Attack = NewInstrument(st.Kind.Species(), st.Identity^uint64(st.Session)<<40^uint64(st.Sample)<<20^0x5eed)
	case StepPartial:
		// Slide the hand sideways until only part of the palm is in view.
		dir := 1.0
		if target.X < w/2 {
			dir = -1
		}
		target.X += dir * 0.42 * w
	case StepMoving:
		// Sweep across the frame for the whole hold: never still.
		frac := 0.0
		if st.Hold > 1 {
			frac = float64(clampInt(k-st.Approach, 0, st.Hold))/float64(st.Hold) - 0.5
		}
		target.X += frac * 0.5 * w
		target.Y += 0.1 * h * math.Sin(frac*2*math.Pi)
		target.Angle += frac * 0.4
	}
	// Approach and withdraw: ease in from far away and out again; the hand
	// also drifts toward its place, as people's hands do.
	var travel float64 // 1 = far away, 0 = in place
	switch {
	case k < st.Approach:
		travel = 1 - smooth(float64(k+1)/float64(st.Approach+1))
	case k >= st.Approach+st.Hold:
		travel = smooth(float64(k-st.Approach-st.Hold+1) / float64(st.Withdraw+1))
	}
	p.Pose = target
	p.Pose.Distance = target.Distance + travel*(farDistance-target.Distance)
	p.Pose.X += travel * 0.15 * w
	p.Pose.Y += travel * 0.2 * h
	t.hold(&p, st, k)
	return p
}

// hold adds what a hand held "still" keeps doing, k frames into step st:
// physiological tremor (8–12 Hz) and postural sway (0.2–0.4 Hz) move it a
// little in and out of plane, and a living hand's soft tissue moves with
// it (the wrist and the skin flex: not a rigid move) while its blood
// volume follows the heartbeat. An instrument is held by a hand too, so it
// trembles and sways, but rigidly, and it has no pulse.
func (t *Timeline) hold(p *Presentation, st Step, k int) {
	r := rand.New(rand.NewPCG(st.Identity^0x7e30, uint64(st.Session)<<20|uint64(st.Sample)))
	sec := float64(k) / t.fps
	wave := func(fLo, fHi float64) float64 {
		f, ph := fLo+(fHi-fLo)*r.Float64(), 2*math.Pi*r.Float64()
		return math.Sin(2*math.Pi*f*sec + ph)
	}
	tremor, sway := wave(8, 12), wave(0.2, 0.4)
	px := focalPx640 * float64(t.width) / 640 / p.Pose.Distance // pixels per mm
	p.Pose.X += px * (0.12*tremor + 0.8*sway)
	p.Pose.Y += px * (0.12*wave(8, 12) + 0.8*wave(0.2, 0.4))
	// Depth too: a hand held in the air sways by about a millimetre.
	p.Pose.Distance += 0.1*wave(8, 12) + 0.8*wave(0.2, 0.4)
	p.TiltX += 0.3*wave(8, 12) + 1.2*wave(0.2, 0.4)
	p.TiltY += 0.3*wave(8, 12) + 1.2*wave(0.2, 0.4)
	if !p.Attack.Live() {
		return
	}
	p.Bend += 0.006 * wave(8, 12)
	p.Fold *= 1 + 0.15*wave(6, 10)
	p.Pulse = p.Identity.pulse(st.Session, sec+r.Float64())
}

func smooth(x float64) float64 { x = clampf(x, 0, 1); return x * x * (3 - 2*x) }

func clampInt(v, lo, hi int) int { return max(lo, min(hi, v)) }
