// Package cmalloc tunes glibc's malloc, which OpenCV allocates from: by
// default every thread that allocates gets an arena of its own, and freed
// pages stay with the process. palmd bounds the arenas and hands free pages
// back after each presentation, which is most of the difference between
// its resident size on the simulator and in steady state on a terminal
// (internal/memreport measures both).
package cmalloc

/*
#include <malloc.h>
static int set_arena_max(int n) { return mallopt(M_ARENA_MAX, n); }
static void trim(void) { malloc_trim(0); }
*/
import "C"

import "errors"

// DefaultArenas bounds malloc's arenas in palmd: one for the capture
// loop, one for whatever else allocates at the same time.
const DefaultArenas = 2

// LimitArenas bounds the number of malloc arenas; call it before threads
// start allocating.
func LimitArenas(n int) error {
	if n < 1 {
		return errors.New("cmalloc: at least one arena")
	}
	if C.set_arena_max(C.int(n)) != 1 {
		return errors.New("cmalloc: mallopt(M_ARENA_MAX) refused")
	}
	return nil
}

// Trim returns free C heap pages to the kernel (malloc_trim).
func Trim() { C.trim() }
