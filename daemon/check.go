package daemon

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/palmd/palmd/config"
	"github.com/palmd/palmd/diag"
	"github.com/palmd/palmd/keyfile"
	"github.com/palmd/palmd/sensor/sim"
)

// Check opens every file the configuration names, as Run would at start
// (keys, certificates, the diagnostics token, the liveness calibration,
// the scenario, the state folder, the camera and PWM nodes), and returns
// every problem at once, each naming its configuration key: what "palmd
// -check-config" and the unit's ExecStartPre= report before a start that
// would fail, or start without its diagnostics port.
func Check(cfg *config.Config) error {
	var errs []error
	bad := func(key string, err error) {
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", key, err))
		}
	}
	_, err := keyfile.LoadDevicePrivateKey(cfg.Keys.Device)
	bad("keys.device", err)
	_, err = keyfile.LoadMatcherPublicKey(keyfile.Resolve(cfg.Keys.Matcher))
	bad("keys.matcher", err)
	_, err = keyfile.LoadDevicePublicKey(keyfile.Resolve(cfg.Keys.Result))
	bad("keys.result", err)
	if cfg.Keys.Command != "" {
		_, err = keyfile.LoadDevicePublicKey(keyfile.Resolve(cfg.Keys.Command))
		bad("keys.command", err)
	}
	if cfg.MQTT.CA != "" {
		_, err = keyfile.LoadTLS(cfg.MQTT.CA, cfg.MQTT.Cert, cfg.MQTT.Key)
		bad("mqtt.ca/cert/key", err)
	}
	if cfg.Diagnostics.TokenFile != "" && strings.TrimSpace(os.Getenv("PALMD_DIAG_TOKEN")) == "" {
		b, err := keyfile.ReadSecret(keyfile.Resolve(cfg.Diagnostics.TokenFile))
		if err == nil && len(strings.TrimSpace(string(b))) < diag.MinTokenLength {
			err = fmt.Errorf("the token in %s is shorter than %d characters", cfg.Diagnostics.TokenFile, diag.MinTokenLength)
		}
		clear(b)
		bad("diagnostics.token_file", err)
	}
	if _, _, err := livenessConfig(cfg); err != nil {
		errs = append(errs, err) // names liveness.calibration_file
	}
	_, err = openSequence(cfg.StateDir)
	bad("state_dir", err)
	switch cfg.Sensor.Kind {
	case "sim":
		if p := cfg.Sensor.Sim.Scenario; p != "" {
			f, err := os.Open(p)
			if err == nil {
				_, err = sim.ParseScenario(f)
				f.Close()
			}
			bad("sensor.sim.scenario", err)
		}
	case "hardware":
		h := cfg.Sensor.Hardware
		st, err := os.Stat(h.Camera)
		if err == nil && st.Mode()&os.ModeCharDevice == 0 {
			err = fmt.Errorf("%s is not a character device", h.Camera)
		}
		bad("sensor.hardware.camera", err)
		if h.IlluminatorPWM != "" {
			_, err := os.Stat(filepath.Join(h.IlluminatorPWM, "duty_cycle"))
			bad("sensor.hardware.illuminator_pwm", err)
		}
	}
	return errors.Join(errs...)
}
