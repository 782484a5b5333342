package sensortest_test

import (
	"fmt"
	"time"

	"github.com/palmd/palmd/sensor"
	"github.com/palmd/palmd/sensor/sensortest"
)

// The illuminator guard on a manual clock: a caller forgets to switch the
// light off, and the guard does it when the clock passes MaxOnTime.
func Example() {
	clock, light := sensortest.NewClock(), &sensortest.Light{}
	ill, err := sensor.NewGuardedIlluminator(light, sensor.GuardLimits{MaxOnTime: 2 * time.Second, Clock: clock})
	if err != nil {
		panic(err)
	}
	_ = ill.On(80)
	fmt.Println("on:", light.Level())
	clock.Advance(3 * time.Second)
	fmt.Println("after 3 s:", light.Level(), "cut-offs:", ill.State().Cutoffs)
	// Output:
	// on: 80
	// after 3 s: 0 cut-offs: 1
}
