package config

import (
	"os"
	"strings"
	"testing"
	"time"
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
		c.Sensor.Sim.FPS != m.Sensor.Sim.FPS || *c.Sensor.Sim.Realtime != *m.Sensor.Sim.Realtime {
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
		{"unknown key with line", minimal + "colour: red\n", "line 5: field colour not found"},
		{"unknown nested key", minimal + "capture: {bursts: 3}\n", "field bursts not found"},
		{"not yaml", "device_id: [", "did not find expected"},
		{"bad device id", strings.Replace(minimal, "term-0001", "term/1", 1), "device_id: \"term/1\""},
		{"missing keys", "device_id: a\nmqtt: {brokers: [tcp://x:1]}\n", "keys.device: required"},
		{"no broker", "device_id: a\nkeys: {device: d, matcher: m, result: r}\n", "mqtt.brokers: at least one"},
		{"bad broker scheme", strings.Replace(minimal, "tcp://", "http://", 1), "scheme \"http\""},
		{"tls without ca", strings.Replace(minimal, "tcp://", "ssl://", 1), "mqtt.ca: required"},
		{"duplicate key", minimal + "mqtt: {brokers: [tcp://x:1]}\n", "already defined at line 4"},
		{"cert without key", noMQTT + "mqtt: {brokers: [tcp://x:1], cert: c.pem}\n", "mqtt.cert and mqtt.key"},
		{"bad duration", minimal + "capture: {feedback: soon}\n", "\"soon\" is not a duration"},
		{"negative level", minimal + "illuminator: {level: -5}\n", "illuminator.level: -5"},
		{"eye-unsafe on-time", minimal + "illuminator: {max_on: 1h}\n", "illuminator.max_on: 1h0m0s outside"},
		{"duty window", minimal + "illuminator: {max_on: 10s, duty_window: 5s}\n", "duty_window: 5s shorter"},
		{"bad sensor", minimal + "sensor: {kind: webcam}\n", "sensor.kind: \"webcam\""},
		{"hardware without line", minimal + "sensor: {kind: hardware}\n", "illuminator_line: required"},
		{"bad log level", minimal + "log_level: loud\n", "log_level: \"loud\""},
		{"bad listen", minimal + "diagnostics: {listen: nowhere}\n", "diagnostics.listen"},
		{"lifetime too short", noMQTT + "mqtt: {brokers: [tcp://x:1], envelope_lifetime: 300ms}\n", "mqtt.envelope_lifetime: 300ms"},
		{"lifetime too long", noMQTT + "mqtt: {brokers: [tcp://x:1], envelope_lifetime: 10m}\n", "mqtt.envelope_lifetime: 10m0s"},
		{"wrong type", minimal + "capture: {burst: many}\n", "cannot unmarshal"},
		{"liveness threshold", minimal + "liveness: {threshold: -1}\n", "liveness.threshold: -1"},
		{"liveness still frames", minimal + "liveness: {still_frames: 2}\n", "liveness.still_frames: 2"},
		{"still frames beyond the capture", minimal + "capture: {max_frames: 20}\nliveness: {still_frames: 30}\n", "liveness.still_frames: 30"},
		{"attack lockout", minimal + "liveness: {lockout: 48h}\n", "liveness.lockout: 48h0m0s"},
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
	if err == nil || strings.Count(err.Error(), ";") < 3 {
		t.Fatalf("want every problem listed: %v", err)
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
	for _, want := range []string{`"soon" is not a duration`, "field loglevel not found", "cannot unmarshal", "illuminator.level: 500"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q missing from %v", want, err)
		}
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
