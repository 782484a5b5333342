// Package simtest starts simulated terminals for tests: the scenario
// built, the camera started and everything closed when the test ends.
package simtest

import (
	"testing"

	"github.com/palmd/palmd/sensor/sim"
)

// Start builds a simulated terminal playing cfg's scenario, starts its
// camera and closes it when t ends.
func Start(t testing.TB, cfg sim.Config) *sim.Sensor {
	t.Helper()
	s, err := sim.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	dev := s.Device()
	t.Cleanup(func() { _ = dev.Close() })
	if err := s.Camera.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	return s
}
