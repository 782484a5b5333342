package index_test

import (
	"fmt"

	"github.com/palmd/palmd/matcher/index"
	"github.com/palmd/palmd/template/templatetest"
)

// A gallery of enrolled palms searched with a new capture of one of them.
func Example() {
	var x index.Index
	for seed := uint64(1); seed <= 1000; seed++ {
		x.Put(fmt.Sprintf("subject-%d", seed), templatetest.Palm(seed, 0, 0))
	}
	probe := templatetest.Palm(42, 0.15, 7) // another capture: 15 % of its bits differ
	m := x.Search(probe)
	fmt.Println(m.Subject, m.Distance < 0.3)
	// Output: subject-42 true
}
