package sim_test

import (
	"context"
	"fmt"
	"log"

	"github.com/palmd/palmd/sensor/sim"
)

// A simulated terminal plays a scenario: one hand approaches, holds still
// for ten frames and withdraws. With the illuminator on, the camera sees it.
func Example() {
	scen := &sim.Scenario{Steps: []sim.Step{
		{Kind: sim.StepPresent, Identity: 42, Approach: 5, Hold: 10, Withdraw: 5},
	}}
	s, err := sim.New(sim.Config{Scenario: scen})
	if err != nil {
		log.Fatal(err)
	}
	dev := s.Device()
	defer dev.Close()
	ctx := context.Background()
	if err := dev.Camera.Start(ctx); err != nil {
		log.Fatal(err)
	}
	if err := dev.Illuminator.On(100); err != nil {
		log.Fatal(err)
	}
	held := 0
	for i := 0; i < scen.Len(); i++ {
		frame, err := dev.Camera.NextFrame(ctx)
		if err != nil {
			log.Fatal(err)
		}
		truth, moment := s.Camera.Truth()
		if moment.Holding && truth.Hand && frame.Illuminated {
			held++
		}
		frame.Zero() // frames are biometric data: wipe them when done
	}
	fmt.Println("frames with a hand held still:", held)
	// Output: frames with a hand held still: 10
}
