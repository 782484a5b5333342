package index

import "golang.org/x/sys/cpu"

// haveCoarseASM: the assembly coarse stage needs POPCNT (every x86-64
// server since 2008; not the x86-64 baseline Go compiles for).
var haveCoarseASM = cpu.X86.HasPOPCNT

// coarseBestASM is coarseBest over ps[0:nps] in assembly.
//
//go:noescape
func coarseBestASM(ps *coarseSketch, nps int, e *coarseSketch) (d, n, v int)
