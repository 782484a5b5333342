// Package config loads palmd's configuration: one YAML file (default
// /etc/palmd/palmd.yaml), decoded strictly, every problem in it reported
// at once as "file:line: key.path: message" in words (unknown keys with a
// suggestion, wrong types, bad durations, values out of bounds), defaults
// filled in, and secrets overridable from the environment.
// systemd/palmd.yaml is the annotated example with every default.
package config

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"reflect"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/palmd/palmd/diag"
	"github.com/palmd/palmd/imaging/liveness"
	"github.com/palmd/palmd/orchestrator"
	"github.com/palmd/palmd/protocol"
	"github.com/palmd/palmd/sensor"
	"github.com/palmd/palmd/sensor/sim"
	"github.com/palmd/palmd/sensor/v4l2cam"
	"github.com/palmd/palmd/uplink"
)

// DefaultPath is where palmd looks for its configuration.
const DefaultPath = "/etc/palmd/palmd.yaml"

// Duration is a time.Duration written as "3s", "500ms", "1m".
type Duration time.Duration

// UnmarshalYAML parses a Go duration string.
//
// Its errors are *yaml.TypeError, which the decoder collects and goes on
// after, so one bad duration does not stop decoding the rest (Parse
// reports it, with its key, from its own walk of the file).
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: want a duration like \"3s\"", n.Line)}}
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: %q is not a duration (like \"500ms\" or \"3s\")", n.Line, s)}}
	}
	*d = Duration(v)
	return nil
}

// D returns the time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// Config is the whole file.
type Config struct {
	DeviceID    string      `yaml:"device_id"`
	LogLevel    string      `yaml:"log_level"`
	Sensor      Sensor      `yaml:"sensor"`
	Illuminator Illuminator `yaml:"illuminator"`
	Capture     Capture     `yaml:"capture"`
	Liveness    Liveness    `yaml:"liveness"`
	Keys        Keys        `yaml:"keys"`
	MQTT        MQTT        `yaml:"mqtt"`
	Diagnostics Diagnostics `yaml:"diagnostics"`
	Security    Security    `yaml:"security"`
	// StateDir holds what palmd keeps across restarts, none of it
	// biometric: the envelope sequence bound. Default $STATE_DIRECTORY
	// (systemd's StateDirectory=) or DefaultStateDir.
	StateDir string `yaml:"state_dir"`
}

// DefaultStateDir is the state folder outside systemd.
const DefaultStateDir = "/var/lib/palmd"

// Sensor selects and configures the sensor.
type Sensor struct {
	Kind     string   `yaml:"kind"` // sim or hardware
	Sim      Sim      `yaml:"sim"`
	Hardware Hardware `yaml:"hardware"`
}

// Sim configures the simulated sensor.
type Sim struct {
	Scenario string  `yaml:"scenario"` // JSON scenario file; empty: an idle scene
	Seed     uint64  `yaml:"seed"`
	Realtime *bool   `yaml:"realtime"`
	Width    int     `yaml:"width"`
	Height   int     `yaml:"height"`
	FPS      float64 `yaml:"fps"`
}

// Hardware configures a real terminal.
type Hardware struct {
	Camera          string   `yaml:"camera"` // /dev/video0 or a /dev/v4l/by-id name
	Width           int      `yaml:"width"`
	Height          int      `yaml:"height"`
	FPS             float64  `yaml:"fps"`
	Exposure        Duration `yaml:"exposure"`
	Gain            float64  `yaml:"gain"`
	IlluminatorLine string   `yaml:"illuminator_line"`
	IlluminatorPWM  string   `yaml:"illuminator_pwm"`
	PresenceLine    string   `yaml:"presence_line"`
	GreenLED        string   `yaml:"green_led"`
	RedLED          string   `yaml:"red_led"`
	Buzzer          string   `yaml:"buzzer"`
}

// Illuminator holds the eye-safety limits.
type Illuminator struct {
	Level      int      `yaml:"level"`
	MaxOn      Duration `yaml:"max_on"`
	MaxDuty    float64  `yaml:"max_duty"`
	DutyWindow Duration `yaml:"duty_window"`
}

// Capture tunes a presentation.
type Capture struct {
	Burst       int      `yaml:"burst"`
	MaxFrames   int      `yaml:"max_frames"`
	Feedback    Duration `yaml:"feedback"`
	LeaveFrames int      `yaml:"leave_frames"`
}

// Liveness configures presentation-attack detection (imaging/liveness) and
// the lockout after repeated attacks.
type Liveness struct {
	// Disabled turns liveness detection off: every presentation is then
	// taken for a living hand. Only for a terminal model whose camera is
	// not calibrated yet; never the default.
	Disabled bool `yaml:"disabled"`
	// Threshold on the fused liveness score (higher refuses less):
	// liveness.DefaultThreshold, or CalibrationFile's, unless set.
	Threshold float64 `yaml:"threshold"`
	// CalibrationFile is a liveness calibration measured on this
	// terminal model's own bona fide presentations (palmctl eval --pad
	// --calibrate --calibration-out; liveness.CalibrationFile): its cue
	// norms replace the built-in ones, which were measured on the
	// simulator, and its threshold applies unless Threshold is set. Read
	// when palmd starts; a path, or a systemd credential name.
	CalibrationFile string `yaml:"calibration_file"`
	// StillFrames is how many still frames passing the quality gates the
	// detector observes before deciding (about 0.4 s at 30 fps).
	StillFrames int `yaml:"still_frames"`
	// Noise is the camera's temporal noise, which the texture cue
	// measures a palm's fine detail against: all zero means
	// liveness.DefaultNoise (the simulated camera's). A terminal model
	// measures its own (palmctl camera-noise) before the pilot whose
	// living hands calibrate CalibrationFile, since that calibration's
	// texture cue is measured against it.
	Noise Noise `yaml:"noise"`
	// MaxAttacks refused within AttackWindow lock the terminal for
	// Lockout.
	MaxAttacks   int      `yaml:"max_attacks"`
	AttackWindow Duration `yaml:"attack_window"`
	Lockout      Duration `yaml:"lockout"`
}

// Noise is a camera's noise model (liveness.NoiseModel): variance = (Read ×
// gain)² + Shot × gain × grey, softened by crosstalk of width Corr.
type Noise struct {
	// Read is the read noise, grey levels at unity gain.
	Read float64 `yaml:"read"`
	// Shot is the shot noise's variance per grey level at unity gain.
	Shot float64 `yaml:"shot"`
	// Corr is the crosstalk's width between neighbouring pixels, px.
	Corr float64 `yaml:"corr"`
}

// Model is the noise model n gives the detector (the zero model for
// unset: the detector's default).
func (n Noise) Model() liveness.NoiseModel {
	return liveness.NoiseModel{Read: n.Read, Shot: n.Shot, Corr: n.Corr}
}

// Keys names key files (paths, or systemd credential names).
type Keys struct {
	Device  string `yaml:"device"`  // Ed25519 private key (PKCS #8 PEM)
	Matcher string `yaml:"matcher"` // matcher public key (PALMD MATCHER PUBLIC KEY)
	Result  string `yaml:"result"`  // matcher's result-signing public key (PKIX Ed25519)
	Command string `yaml:"command"` // cloud's command-signing public key (optional)
}

// MQTT configures the uplink.
type MQTT struct {
	Brokers []string `yaml:"brokers"`
	// BaseTopic is the first levels of every topic (palm-matcher's
	// -base-topic must agree): protocol.DefaultBaseTopic unless set.
	BaseTopic         string   `yaml:"base_topic"`
	CA                string   `yaml:"ca"`
	Cert              string   `yaml:"cert"`
	Key               string   `yaml:"key"`
	Username          string   `yaml:"username"`
	Password          string   `yaml:"password"` // or $PALMD_MQTT_PASSWORD
	ResultDeadline    Duration `yaml:"result_deadline"`
	EnvelopeLifetime  Duration `yaml:"envelope_lifetime"`
	OutboxEntries     int      `yaml:"outbox_entries"`
	TelemetryInterval Duration `yaml:"telemetry_interval"`
}

// Diagnostics configures the technicians' port.
type Diagnostics struct {
	Listen    string `yaml:"listen"`
	TokenFile string `yaml:"token_file"` // or credential name; $PALMD_DIAG_TOKEN overrides
}

// Security holds process hardening switches.
type Security struct {
	LockMemory bool `yaml:"lock_memory"`
}

// MaxFileSize bounds a configuration file.
const MaxFileSize = 1 << 20

// Load reads and validates the file at path. Its problems come as an
// *Error naming path, one line per problem.
func Load(path string) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	defer f.Close()
	c, err := Parse(f, os.Getenv)
	var ce *Error
	if errors.As(err, &ce) {
		ce.File = path
	}
	return c, err
}

// Parse decodes and validates a configuration; getenv supplies the
// environment overrides. Every problem is reported at once, as an *Error
// (whose File is "config" until Load names it): unknown keys, wrong
// types and bad durations with their lines, then every value out of
// bounds; a syntax error stops all, at the line where the file stops
// being YAML.
func Parse(r io.Reader, getenv func(string) string) (*Config, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	e := &Error{File: "config"}
	if len(data) > MaxFileSize {
		e.Problems = []Problem{{Message: fmt.Sprintf("larger than %d bytes: is this the configuration file?", MaxFileSize)}}
		return nil, e
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		e.Problems = []Problem{syntaxProblem(data, err)}
		return nil, e
	}
	ch := &checker{lines: map[string]int{}}
	var c Config
	decoded := true
	if len(doc.Content) > 0 {
		root := doc.Content[0]
		ch.walk(root, reflect.TypeFor[Config](), "")
		// What the walk found wrong stays at its zero value (and then its
		// default); the decoder's own messages would only repeat the
		// walk's in Go's terms. A key given twice stops the decoder
		// altogether: the values are then not checked (every one would
		// look missing).
		var te *yaml.TypeError
		if err := root.Decode(&c); err != nil && !errors.As(err, &te) {
			decoded = false
		}
	}
	if getenv != nil {
		if v := getenv("PALMD_MQTT_PASSWORD"); v != "" {
			c.MQTT.Password = v
		}
		if v := getenv("PALMD_DEVICE_ID"); v != "" {
			c.DeviceID = v
		}
		if v := getenv("STATE_DIRECTORY"); v != "" && c.StateDir == "" {
			c.StateDir = strings.Split(v, ":")[0]
		}
	}
	c.defaults()
	e.Problems = ch.problems
	reported := map[string]bool{}
	for _, p := range ch.problems {
		reported[p.Key] = true
	}
	for _, p := range c.problems() {
		if decoded && !ch.duplicates && !reported[p.Key] {
			p.Line = ch.lineOf(p.Key)
			e.Problems = append(e.Problems, p)
		}
	}
	if len(e.Problems) > 0 {
		sortProblems(e.Problems)
		return nil, e
	}
	return &c, nil
}

func (c *Config) defaults() {
	setS := func(p *string, v string) {
		if *p == "" {
			*p = v
		}
	}
	setI := func(p *int, v int) {
		if *p == 0 {
			*p = v
		}
	}
	setD := func(p *Duration, v time.Duration) {
		if *p == 0 {
			*p = Duration(v)
		}
	}
	setS(&c.LogLevel, "info")
	setS(&c.Sensor.Kind, "sim")
	setI(&c.Sensor.Sim.Width, sim.DefaultWidth)
	setI(&c.Sensor.Sim.Height, sim.DefaultHeight)
	if c.Sensor.Sim.FPS == 0 {
		c.Sensor.Sim.FPS = sim.DefaultFPS
	}
	if c.Sensor.Sim.Realtime == nil {
		t := true
		c.Sensor.Sim.Realtime = &t
	}
	setS(&c.Sensor.Hardware.Camera, v4l2cam.DefaultDevice)
	setI(&c.Sensor.Hardware.Width, v4l2cam.DefaultWidth)
	setI(&c.Sensor.Hardware.Height, v4l2cam.DefaultHeight)
	if c.Sensor.Hardware.FPS == 0 {
		c.Sensor.Hardware.FPS = v4l2cam.DefaultFPS
	}
	setD(&c.Sensor.Hardware.Exposure, v4l2cam.DefaultExposure)
	if c.Sensor.Hardware.Gain == 0 {
		c.Sensor.Hardware.Gain = v4l2cam.DefaultGain
	}
	setI(&c.Illuminator.Level, orchestrator.DefaultIlluminatorLevel)
	setD(&c.Illuminator.MaxOn, sensor.DefaultMaxOnTime)
	if c.Illuminator.MaxDuty == 0 {
		c.Illuminator.MaxDuty = sensor.DefaultMaxDuty
	}
	setD(&c.Illuminator.DutyWindow, sensor.DefaultDutyWindow)
	setI(&c.Capture.Burst, orchestrator.DefaultBurst)
	setI(&c.Capture.MaxFrames, orchestrator.DefaultCaptureFrames)
	setD(&c.Capture.Feedback, orchestrator.DefaultFeedback)
	setI(&c.Capture.LeaveFrames, orchestrator.DefaultLeaveFrames)
	if c.Liveness.Threshold == 0 && c.Liveness.CalibrationFile == "" { // else the file's (daemon)
		c.Liveness.Threshold = liveness.DefaultThreshold
	}
	setI(&c.Liveness.StillFrames, liveness.DefaultMinStillFrames)
	setI(&c.Liveness.MaxAttacks, orchestrator.DefaultAttackMax)
	setD(&c.Liveness.AttackWindow, orchestrator.DefaultAttackWindow)
	setD(&c.Liveness.Lockout, orchestrator.DefaultAttackLockout)
	setS(&c.MQTT.BaseTopic, protocol.DefaultBaseTopic)
	setD(&c.MQTT.ResultDeadline, uplink.DefaultResultDeadline)
	setD(&c.MQTT.EnvelopeLifetime, protocol.DefaultLifetime)
	setI(&c.MQTT.OutboxEntries, uplink.DefaultOutboxEntries)
	setD(&c.MQTT.TelemetryInterval, uplink.DefaultTelemetryInterval)
	setS(&c.Diagnostics.Listen, diag.DefaultListen)
	setS(&c.StateDir, DefaultStateDir)
}

// Validate checks every value and reports all problems at once, as an
// *Error without lines.
func (c *Config) Validate() error {
	if ps := c.problems(); len(ps) > 0 {
		return &Error{File: "config", Problems: ps}
	}
	return nil
}

// problems checks every value, defaults filled in.
func (c *Config) problems() []Problem {
	var ps []Problem
	bad := func(format string, args ...any) {
		key, msg, _ := strings.Cut(fmt.Sprintf(format, args...), ": ")
		ps = append(ps, Problem{Key: key, Message: msg})
	}
	if !protocol.ValidDeviceID(c.DeviceID) {
		bad("device_id: %q must be 1–64 letters, digits, '.', '_' or '-'", c.DeviceID)
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		bad("log_level: %q must be debug, info, warn or error", c.LogLevel)
	}
	switch c.Sensor.Kind {
	case "sim":
		s := c.Sensor.Sim
		if s.Width < 64 || s.Width > 4096 || s.Height < 64 || s.Height > 4096 {
			bad("sensor.sim: frame size %dx%d outside 64..4096", s.Width, s.Height)
		}
		if s.FPS <= 0 || s.FPS > 240 {
			bad("sensor.sim.fps: %v outside (0, 240]", s.FPS)
		}
	case "hardware":
		h := c.Sensor.Hardware
		if !strings.HasPrefix(h.Camera, "/dev/") {
			bad("sensor.hardware.camera: %q must be a device path under /dev", h.Camera)
		}
		if h.IlluminatorLine == "" {
			bad("sensor.hardware.illuminator_line: required (the GPIO line name driving the NIR illuminator)")
		}
		if h.Exposure.D() <= 0 || h.Exposure.D() > time.Second {
			bad("sensor.hardware.exposure: %v outside (0, 1s]", h.Exposure.D())
		}
	default:
		bad("sensor.kind: %q must be sim or hardware", c.Sensor.Kind)
	}
	il := c.Illuminator
	if il.Level < 1 || il.Level > 100 {
		bad("illuminator.level: %d outside 1..100", il.Level)
	}
	// The eye-safety bounds are the guard's own (sensor.GuardLimits).
	var le *sensor.LimitError
	if err := (sensor.GuardLimits{MaxOnTime: il.MaxOn.D(), MaxDuty: il.MaxDuty, DutyWindow: il.DutyWindow.D()}).Validate(); errors.As(err, &le) {
		bad("illuminator.%s: %s", le.Field, le.Problem)
	} else if err != nil {
		bad("illuminator: %v", err)
	}
	if c.Capture.Burst < 1 || c.Capture.Burst > 30 {
		bad("capture.burst: %d outside 1..30", c.Capture.Burst)
	}
	if c.Capture.MaxFrames < c.Capture.Burst || c.Capture.MaxFrames > 1000 {
		bad("capture.max_frames: %d outside burst..1000", c.Capture.MaxFrames)
	}
	lv := c.Liveness
	if fromFile := lv.Threshold == 0 && lv.CalibrationFile != ""; !fromFile && !(lv.Threshold > 0 && lv.Threshold <= liveness.MaxThreshold) {
		bad("liveness.threshold: %v outside (0, %d]", lv.Threshold, liveness.MaxThreshold)
	}
	if lv.StillFrames < 4 || lv.StillFrames > c.Capture.MaxFrames {
		bad("liveness.still_frames: %d outside 4..capture.max_frames (%d)", lv.StillFrames, c.Capture.MaxFrames)
	}
	if lv.Noise != (Noise{}) {
		if err := lv.Noise.Model().Check(); err != nil {
			bad("liveness.noise: %v (palmctl camera-noise measures all three)", strings.ReplaceAll(err.Error(), "\n", "; "))
		}
	}
	if lv.MaxAttacks < 1 || lv.MaxAttacks > 1000 {
		bad("liveness.max_attacks: %d outside 1..1000", lv.MaxAttacks)
	}
	for name, d := range map[string]time.Duration{"attack_window": lv.AttackWindow.D(), "lockout": lv.Lockout.D()} {
		if d <= 0 || d > 24*time.Hour {
			bad("liveness.%s: %v outside (0, 24h]", name, d)
		}
	}
	if c.Keys.Device == "" {
		bad("keys.device: required (the device's Ed25519 private key)")
	}
	if c.Keys.Matcher == "" {
		bad("keys.matcher: required (the matcher's public key)")
	}
	if c.Keys.Result == "" {
		bad("keys.result: required (the matcher's result-signing public key)")
	}
	if len(c.MQTT.Brokers) == 0 {
		bad("mqtt.brokers: at least one broker URL is required")
	}
	tlsBroker := false
	for i, b := range c.MQTT.Brokers {
		u, err := url.Parse(b)
		switch {
		case err != nil || u.Host == "":
			bad("mqtt.brokers[%d]: %q is not a URL like ssl://broker:8883", i, b)
		case u.Scheme == "ssl" || u.Scheme == "mqtts" || u.Scheme == "tls":
			tlsBroker = true
		case u.Scheme != "tcp" && u.Scheme != "mqtt":
			bad("mqtt.brokers[%d]: scheme %q must be tcp, mqtt, ssl, mqtts or tls", i, u.Scheme)
		}
	}
	if err := protocol.ValidBaseTopic(c.MQTT.BaseTopic); err != nil {
		bad("mqtt.base_topic: %s", strings.TrimPrefix(err.Error(), "protocol: "))
	}
	if tlsBroker && c.MQTT.CA == "" {
		bad("mqtt.ca: required for TLS brokers (the CA bundle that signs the broker's certificate)")
	}
	if (c.MQTT.Cert == "") != (c.MQTT.Key == "") {
		bad("mqtt.cert and mqtt.key: give both (mutual TLS) or neither")
	}
	if d := c.MQTT.ResultDeadline.D(); d <= 0 || d > time.Minute {
		bad("mqtt.result_deadline: %v outside (0, 1m]", d)
	}
	if d := c.MQTT.EnvelopeLifetime.D(); d < time.Second || d > 5*time.Minute {
		bad("mqtt.envelope_lifetime: %v outside [1s, 5m] (shorter leaves no time to deliver and answer; the matcher refuses longer)", d)
	}
	if c.MQTT.OutboxEntries < 1 || c.MQTT.OutboxEntries > uplink.MaxOutboxEntries {
		bad("mqtt.outbox_entries: %d outside 1..%d", c.MQTT.OutboxEntries, uplink.MaxOutboxEntries)
	}
	if !strings.HasPrefix(c.StateDir, "/") {
		bad("state_dir: %q must be an absolute path", c.StateDir)
	}
	if _, _, err := net.SplitHostPort(c.Diagnostics.Listen); err != nil {
		bad("diagnostics.listen: %q is not host:port", c.Diagnostics.Listen)
	}
	return ps
}
