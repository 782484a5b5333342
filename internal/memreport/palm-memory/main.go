// Command palm-memory prints where palmd's memory goes (memreport.Run). It
// is built by make memory with exactly palmd's link (scripts/build.sh), so
// the libraries it maps are palmd's.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"

	"github.com/palmd/palmd/internal/cmalloc"
	"github.com/palmd/palmd/internal/memreport"
)

func main() {
	frames := flag.Int("frames", 600, "frames the pipeline phase processes")
	arenas := flag.Int("malloc-arenas", cmalloc.DefaultArenas, "bound glibc's malloc arenas as palmd does (0: glibc's default, one per thread)")
	trim := flag.Bool("trim", true, "return free C heap to the kernel after every presentation's worth of frames, as palmd does")
	maxMiB := flag.Float64("max-resident", 0, "fail when the pipeline's resident size exceeds this many MiB (0: no check)")
	flag.Parse()
	if *arenas > 0 {
		if err := cmalloc.LimitArenas(*arenas); err != nil {
			fmt.Fprintln(os.Stderr, "palm-memory:", err)
			os.Exit(1)
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	rows, err := memreport.Run(ctx, memreport.Options{Frames: *frames, Trim: *trim})
	if err == nil {
		err = memreport.Write(os.Stdout, rows)
	}
	if last := rows[len(rows)-1]; err == nil && *maxMiB > 0 && float64(last.RSS)/(1<<20) > *maxMiB {
		err = fmt.Errorf("%s: %.1f MiB resident, over %.0f MiB", last.Name, float64(last.RSS)/(1<<20), *maxMiB)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "palm-memory:", err)
		os.Exit(1)
	}
}
