package config

import (
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/palmd/palmd/imaging/liveness"
)

const minimal = `
device_id: term-0001
keys: {device: d.key, matcher: m.pub, result: r.pub}
mqtt: {brokers: ["tcp://127.0.0.1:1883"]}
`

const noMQTT = `
device_id: term-0001
keys: {device: d.key, matcher: m.pub, result: r.pub}
`

func TestExampleFileIsValid(t *testing.T) {
	c, err := Load("../systemd/palmd.yaml")
	if err != nil {
		t.Fatal(err)
	}
	// The example documents the defaults: parsing a minimal file must give
	// the same values.
	m, err := Parse(strings.NewReader(minimal), nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Illuminator != m.Illuminator || c.Capture != m.Capture || c.MQTT.ResultDeadline != m.MQTT.ResultDeadline ||
		c.MQTT.EnvelopeLifetime != m.MQTT.EnvelopeLifetime || c.Diagnostics.Listen != m.Diagnostics.Listen ||
		c.Sensor.Sim.FPS != m.Sensor.Sim.FPS || *c.Sensor.Sim.Realtime != *m.Sensor.Sim.Realtime || c.Liveness != m.Liveness {
		t.Errorf("example file and defaults disagree:\n%+v\n%+v", c, m)
	}
	if m.MQTT.ResultDeadline.D() != 3*time.Second || m.Illuminator.MaxOn.D() != 5*time.Second {
		t.Errorf("defaults %+v", m)
	}
}

func TestEnvironmentOverrides(t *testing.T) {
	env := map[string]string{"PALMD_MQTT_PASSWORD": "s3cret", "PALMD_DEVICE_ID": "term-0099"}
	c, err := Parse(strings.NewReader(minimal), func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if c.MQTT.Password != "s3cret" || c.DeviceID != "term-0099" {
		t.Fatalf("overrides not applied: %+v", c)
	}
}

func TestBrokenFiles(t *testing.T) {
	cases := []struct {
		name, yaml, want string
	}{
		{"unknown key with line", minimal + "colour: red\n", "config:5: colour: unknown key"},
		{"unknown nested key", minimal + "capture: {bursts: 3}\n", "config:5: capture.bursts: unknown key; did you mean capture.burst?"},
		{"not yaml", "device_id: [", "config:1: not valid YAML"},
		{"bad device id", strings.Replace(minimal, "term-0001", "term/1", 1), "device_id: \"term/1\""},
		{"missing keys", "device_id: a\nmqtt: {brokers: [tcp://x:1]}\n", "keys.device: required"},
		{"no broker", "device_id: a\nkeys: {device: d, matcher: m, result: r}\n", "mqtt.brokers: at least one"},
		{"bad broker scheme", strings.Replace(minimal, "tcp://", "http://", 1), "scheme \"http\""},
		{"tls without ca", strings.Replace(minimal, "tcp://", "ssl://", 1), "mqtt.ca: required"},
		{"duplicate key", minimal + "mqtt: {brokers: [tcp://x:1]}\n", "config:5: mqtt: given twice (first at line 4)"},
		{"cert without key", noMQTT + "mqtt: {brokers: [tcp://x:1], cert: c.pem}\n", "mqtt.cert and mqtt.key"},
		{"bad duration", minimal + "capture: {feedback: soon}\n", "config:5: capture.feedback: \"soon\" is not a duration"},
		{"negative level", minimal + "illuminator: {level: -5}\n", "illuminator.level: -5"},
		{"eye-unsafe on-time", minimal + "illuminator: {max_on: 1h}\n", "illuminator.max_on: 1h0m0s outside"},
		{"duty window", minimal + "illuminator: {max_on: 10s, duty_window: 5s}\n", "duty_window: 5s shorter"},
		{"bad sensor", minimal + "sensor: {kind: webcam}\n", "sensor.kind: \"webcam\""},
		{"hardware without line", minimal + "sensor: {kind: hardware}\n", "illuminator_line: required"},
		{"bad log level", minimal + "log_level: loud\n", "log_level: \"loud\""},
		{"bad listen", minimal + "diagnostics: {listen: nowhere}\n", "diagnostics.listen"},
		{"lifetime too short", noMQTT + "mqtt: {brokers: [tcp://x:1], envelope_lifetime: 300ms}\n", "mqtt.envelope_lifetime: 300ms"},
		{"lifetime too long", noMQTT + "mqtt: {brokers: [tcp://x:1], envelope_lifetime: 10m}\n", "mqtt.envelope_lifetime: 10m0s"},
		{"wrong type", minimal + "capture: {burst: many}\n", "config:5: capture.burst: want a whole number, got \"many\""},
		{"liveness threshold", minimal + "liveness: {threshold: -1}\n", "liveness.threshold: -1"},
		{"liveness threshold beside a calibration file", minimal + "liveness: {threshold: 101, calibration_file: /etc/palmd/liveness.json}\n", "liveness.threshold: 101"},
		{"liveness still frames", minimal + "liveness: {still_frames: 2}\n", "liveness.still_frames: 2"},
		{"still frames beyond the capture", minimal + "capture: {max_frames: 20}\nliveness: {still_frames: 30}\n", "liveness.still_frames: 30"},
		{"attack lockout", minimal + "liveness: {lockout: 48h}\n", "liveness.lockout: 48h0m0s"},
		{"noise model half given", minimal + "liveness: {noise: {read: 0.5}}\n", "liveness.noise: shot 0 outside (0, 1]"},
		{"noise model out of bounds", minimal + "liveness: {noise: {read: 40, shot: 0.002, corr: -1}}\n", "liveness.noise: read 40 outside (0, 20] grey levels; corr -1 outside [0, 3] px"},
		{"attack limit", minimal + "liveness: {max_attacks: 0, attack_window: -1s}\n", "liveness.attack_window: -1s"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(strings.NewReader(tc.yaml), nil)
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%v, want it to mention %q", err, tc.want)
			}
		})
	}
}

func TestMultipleProblemsReportedTogether(t *testing.T) {
	_, err := Parse(strings.NewReader("device_id: \"\"\nlog_level: x\n"), nil)
	if err == nil || strings.Count(err.Error(), "\n") < 3 {
		t.Fatalf("want every problem listed, one per line: %v", err)
	}
}

// TestBadDurationHidesNothing: a bad duration, an unknown key, a wrong type
// and a bad value in one file are all reported.
func TestBadDurationHidesNothing(t *testing.T) {
	y := minimal + "capture: {feedback: soon, burst: many}\nloglevel: debug\nilluminator: {level: 500}\n"
	_, err := Parse(strings.NewReader(y), nil)
	if err == nil {
		t.Fatal("accepted")
	}
	for _, want := range []string{`config:5: capture.feedback: "soon" is not a duration`, "config:6: loglevel: unknown key; did you mean log_level?",
		`config:5: capture.burst: want a whole number, got "many"`, "config:7: illuminator.level: 500 outside 1..100"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q missing from %v", want, err)
		}
	}
}

var goTerms = regexp.MustCompile(`config\.Config|unmarshal|!!|\bu?int(64)?\b|float64|time\.Duration|yaml:|struct`)

// TestProblemsInWords: what an operator reads for each kind of mistake
// — every problem of a file at once, one per line, "file:line:
// key.path: message", no Go type names, a syntax error at the line where
// it is rather than where its section began.
func TestProblemsInWords(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		name, yaml string
		want       []string
	}{
		{"four problems in one file", minimal + "loglevel: debug\nilluminator:\n  level: high\n  max_on: soon\ncapture:\n  burst: 50\n", []string{
			"palmd.yaml:5: loglevel: unknown key; did you mean log_level?",
			`palmd.yaml:7: illuminator.level: want a whole number, got "high"`,
			`palmd.yaml:8: illuminator.max_on: "soon" is not a duration`,
			"palmd.yaml:10: capture.burst: 50 outside 1..30",
		}},
		{"bad indent deep in a section", minimal + "mqtt:\n  result_deadline: 3s\n  outbox_entries: 8\n  telemetry_interval: 1m\n envelope_lifetime: 1m\n  ca: x\n", []string{
			"palmd.yaml:9: not valid YAML",
		}},
		{"tab in the indentation", minimal + "capture:\n  burst: 3\n\tmax_frames: 40\n", []string{"palmd.yaml:7: not valid YAML: "}},
		{"list where a value goes", minimal + "log_level: [debug]\n", []string{"palmd.yaml:5: log_level: want a single value, got a list"}},
		{"value where a section goes", minimal + "capture: fast\n", []string{`palmd.yaml:5: capture: want a section of keys`}},
		{"value where a list goes", strings.Replace(minimal, `["tcp://127.0.0.1:1883"]`, "tcp://127.0.0.1:1883", 1), []string{"palmd.yaml:4: mqtt.brokers: want a list"}},
		{"bool", minimal + "security: {lock_memory: maybe}\n", []string{`palmd.yaml:5: security.lock_memory: want true or false, got "maybe"`}},
		{"missing key has no line", "device_id: a\nmqtt: {brokers: [tcp://x:1]}\n", []string{"palmd.yaml: keys.device: required"}},
		{"bad list element", strings.Replace(minimal, `["tcp://127.0.0.1:1883"]`, `[tcp://x:1, "::"]`, 1), []string{"palmd.yaml:4: mqtt.brokers[1]:"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := dir + "/palmd.yaml"
			if err := os.WriteFile(path, []byte(tc.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := Load(path)
			if err == nil {
				t.Fatal("accepted")
			}
			got := strings.ReplaceAll(err.Error(), dir+"/", "")
			for _, w := range tc.want {
				if !strings.Contains(got, w) {
					t.Errorf("want %q in:\n%s", w, got)
				}
			}
			for _, line := range strings.Split(got, "\n") {
				if goTerms.MatchString(strings.TrimPrefix(line, "palmd.yaml")) {
					t.Errorf("Go terms in %q", line)
				}
			}
			if n := strings.Count(got, "\n") + 1; n < len(tc.want) {
				t.Errorf("%d lines for %d problems:\n%s", n, len(tc.want), got)
			}
		})
	}
}

func TestLoadMissingFile(t *testing.T) {
	if _, err := Load("/nonexistent/palmd.yaml"); err == nil || !os.IsNotExist(unwrapAll(err)) {
		t.Fatalf("missing file: %v", err)
	}
}

func unwrapAll(err error) error {
	for {
		u, ok := err.(interface{ Unwrap() error })
		if !ok {
			return err
		}
		err = u.Unwrap()
	}
}

// TestThresholdFromCalibrationFile: with a calibration file and no
// threshold, the threshold stays unset for the daemon to take the
// file's; without a file it is the built-in one.
func TestThresholdFromCalibrationFile(t *testing.T) {
	for _, tc := range []struct {
		name, liveness string
		want           float64
	}{
		{"built in", "", liveness.DefaultThreshold},
		{"the file's", "liveness: {calibration_file: /etc/palmd/liveness.json}\n", 0},
		{"set beside the file", "liveness: {calibration_file: /etc/palmd/liveness.json, threshold: 4.2}\n", 4.2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse(strings.NewReader(minimal+tc.liveness), nil)
			if err != nil {
				t.Fatal(err)
			}
			if c.Liveness.Threshold != tc.want {
				t.Errorf("threshold %v, want %v", c.Liveness.Threshold, tc.want)
			}
		})
	}
}
