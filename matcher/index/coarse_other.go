//go:build !amd64

package index

const haveCoarseASM = false

func coarseBestASM(ps *coarseSketch, nps int, e *coarseSketch) (d, n, v int) {
	panic("index: no assembly coarse stage on this architecture")
}
