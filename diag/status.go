package diag

import (
	"math"
	"time"

	"github.com/palmd/palmd/imaging/liveness"
	"github.com/palmd/palmd/version"
)

// Status is the JSON of /api/v1/status: snake_case names, units in the
// names (seconds, milliseconds, ratios 0..1, percent), counters ending in
// _total. Numbers and states only.
type Status struct {
	Device        string   `json:"device"`
	Version       string   `json:"version"`
	UptimeSeconds int64    `json:"uptime_seconds"`
	State         string   `json:"state"`
	Degraded      []string `json:"degraded,omitempty"`
	// Camera is nil when the source has no camera.
	Camera      *CameraStatus      `json:"camera,omitempty"`
	Illuminator *IlluminatorStatus `json:"illuminator,omitempty"`
	Broker      *BrokerStatus      `json:"broker,omitempty"`
	// Presentations counts presentations by outcome.
	Presentations        map[string]int `json:"presentations_total"`
	EnrolmentSamplesLeft int            `json:"enrolment_samples_left"`
	LastError            string         `json:"last_error,omitempty"`
	// Recent are the last presentations, oldest first.
	Recent []Presentation `json:"recent"`
	// AttacksRefused counts presentation attacks refused, by the cue that
	// refused them; LockedUntil is set while repeated attacks lock the
	// terminal.
	AttacksRefused map[liveness.Cue]int `json:"attacks_refused_total"`
	LockedUntil    *time.Time           `json:"locked_until,omitempty"`
}

// CameraStatus is the camera part of Status.
type CameraStatus struct {
	Format string `json:"format"`
	// ConfiguredFPS is what the camera was set to; MeasuredFPS what it
	// delivered over the last second or so.
	ConfiguredFPS float64 `json:"configured_fps"`
	MeasuredFPS   float64 `json:"measured_fps"`
	FramesTotal   uint64  `json:"frames_total"`
	ReopensTotal  int     `json:"reopens_total"`
}

// IlluminatorStatus is the illuminator part of Status.
type IlluminatorStatus struct {
	On           bool    `json:"on"`
	LevelPercent int     `json:"level_percent"`
	DutyRatio    float64 `json:"duty_ratio"`
	MaxDutyRatio float64 `json:"max_duty_ratio"`
	OnSeconds    float64 `json:"on_seconds_total"`
	Cutoffs      int     `json:"cutoffs_total"`
}

// BrokerStatus is the broker link part of Status.
type BrokerStatus struct {
	Connected       bool   `json:"connected"`
	Reconnects      uint64 `json:"reconnects_total"`
	OutboxCaptures  int    `json:"outbox_captures"`
	OutboxBytes     int    `json:"outbox_bytes"`
	Submitted       uint64 `json:"captures_submitted_total"`
	Delivered       uint64 `json:"captures_delivered_total"`
	Expired         uint64 `json:"captures_expired_total"`
	Answered        uint64 `json:"captures_answered_total"`
	Commands        uint64 `json:"commands_total"`
	CommandsRefused uint64 `json:"commands_refused_total"`
}

// Presentation is one recent presentation in Status.
type Presentation struct {
	At      time.Time `json:"at"`
	Outcome string    `json:"outcome"`
	Quality int       `json:"quality_percent"`
	// GateFailures counts frames refused by each quality gate.
	GateFailures     map[string]int `json:"gate_failures,omitempty"`
	StillToResultMS  int64          `json:"still_to_result_ms"`
	InViewToResultMS int64          `json:"in_view_to_result_ms"`
	LivenessScore    float64        `json:"liveness_score"`
	AttackCue        string         `json:"attack_cue,omitempty"`
}

// reopener is a camera that counts its reopenings (v4l2cam).
type reopener interface{ Reopens() int }

func (s *Server) snapshot() Status {
	st := Status{Device: s.src.DeviceID, Version: version.Version, UptimeSeconds: int64(time.Since(s.started).Seconds()),
		Presentations: map[string]int{}, Recent: []Presentation{}, AttacksRefused: map[liveness.Cue]int{}}
	if c := s.src.Camera; c != nil {
		f := c.Format()
		st.Camera = &CameraStatus{Format: f.String(), ConfiguredFPS: f.FPS}
		if r, ok := c.(reopener); ok {
			st.Camera.ReopensTotal = r.Reopens()
		}
	}
	if il := s.src.Illuminator; il != nil {
		is := il.State()
		st.Illuminator = &IlluminatorStatus{On: is.On, LevelPercent: is.Level, DutyRatio: round(is.Duty, 3), MaxDutyRatio: is.MaxDuty,
			OnSeconds: round(is.TotalOn.Seconds(), 1), Cutoffs: is.Cutoffs}
	}
	if u := s.src.Uplink; u != nil {
		us := u.Stats()
		b := &BrokerStatus{Connected: us.Connected, Reconnects: us.Reconnects, OutboxCaptures: us.OutboxDepth, OutboxBytes: us.OutboxBytes,
			Submitted: us.Submitted, Delivered: us.Delivered, Expired: us.Expired, Answered: us.Results, Commands: us.Commands}
		for _, n := range us.CommandsDropped {
			b.CommandsRefused += n
		}
		st.Broker = b
	}
	if o := s.src.Orchestrator; o != nil {
		st.State, st.EnrolmentSamplesLeft, st.LastError, st.Degraded = string(o.State()), o.Enrolling(), o.LastError(), o.Degraded()
		if st.Camera != nil {
			st.Camera.FramesTotal, st.Camera.MeasuredFPS = o.Frames(), round(o.FrameRate(), 1)
		}
		for k, v := range o.Outcomes() {
			st.Presentations[string(k)] = v
		}
		for _, p := range o.Recent() {
			st.Recent = append(st.Recent, Presentation{At: p.At.UTC(), Outcome: string(p.Outcome), Quality: p.Quality, GateFailures: p.Gates,
				StillToResultMS: p.StillToResult.Milliseconds(), InViewToResultMS: p.InViewToResult.Milliseconds(),
				LivenessScore: round(p.Liveness.Score, 2), AttackCue: string(p.Attack)})
		}
		st.AttacksRefused = o.Attacks()
		if until := o.LockedUntil(); !until.IsZero() {
			st.LockedUntil = &until
		}
	}
	return st
}

func round(v float64, digits int) float64 {
	p := math.Pow(10, float64(digits))
	return math.Round(v*p) / p
}
