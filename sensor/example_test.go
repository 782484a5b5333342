package sensor_test

import (
	"fmt"
	"log"
	"time"

	"github.com/palmd/palmd/sensor"
)

// led is a stand-in for real illuminator hardware: anything that can set a
// level becomes a safe Illuminator once guarded.
type led struct{ level int }

func (l *led) SetLevel(p int) error { l.level = p; return nil }
func (l *led) Close() error         { return nil }

// The guard makes any light driver eye-safe: it switches the light off after
// the maximum on-time even if the caller never does.
func ExampleNewGuardedIlluminator() {
	hw := &led{}
	ill, err := sensor.NewGuardedIlluminator(hw, sensor.GuardLimits{MaxOnTime: 20 * time.Millisecond})
	if err != nil {
		log.Fatal(err)
	}
	defer ill.Close()
	if err := ill.On(80); err != nil {
		log.Fatal(err)
	}
	fmt.Println("on:", ill.State().On)
	time.Sleep(100 * time.Millisecond) // the caller forgets to switch it off
	st := ill.State()
	fmt.Println("on:", st.On, "cut-offs:", st.Cutoffs)
	// Output:
	// on: true
	// on: false cut-offs: 1
}
