// Package memreport measures where palmd's memory goes: the kernel's
// resident set split into anonymous memory and mapped files (the shared
// libraries OpenCV pulls in), the Go heap (runtime/metrics) and the C
// heap that OpenCV allocates from (glibc's mallinfo2), phase by phase:
// libraries loaded, the simulator's renderer, the capture pipeline in
// steady state. make memory prints the table (palm-memory, linked as palmd
// is); the README quotes it.
package memreport

/*
#include <malloc.h>
static size_t c_heap_in_use(void) { struct mallinfo2 m = mallinfo2(); return m.uordblks + m.hblkhd; }
static size_t c_heap_held(void) { struct mallinfo2 m = mallinfo2(); return m.arena + m.hblkhd; }

*/
import "C"

import (
	"bufio"
	"fmt"
	"os"
	"runtime"
	"runtime/metrics"
	"strconv"
	"strings"
)

// Snapshot is the process's memory at one moment, in bytes.
type Snapshot struct {
	// RSS is the resident set; Anon and File its anonymous and
	// file-backed parts (RssAnon, RssFile in /proc/self/status).
	RSS, Anon, File uint64
	// GoHeap is the live Go heap objects; GoTotal all memory the Go
	// runtime holds from the kernel (heap, stacks, metadata), less what
	// it has released back.
	GoHeap, GoTotal uint64
	// CInUse is what C code (OpenCV) holds allocated from malloc; CHeld
	// what malloc holds from the kernel (in use, free, not yet returned).
	CInUse, CHeld uint64
}

// Take reads a snapshot after a garbage collection (so the Go figures
// are live data, not garbage).
func Take() (Snapshot, error) {
	runtime.GC()
	var s Snapshot
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return s, fmt.Errorf("memreport: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		if err != nil {
			continue
		}
		switch k {
		case "VmRSS":
			s.RSS = kb << 10
		case "RssAnon":
			s.Anon = kb << 10
		case "RssFile":
			s.File = kb << 10
		}
	}
	m := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}, {Name: "/memory/classes/total:bytes"},
		{Name: "/memory/classes/heap/released:bytes"}}
	metrics.Read(m)
	s.GoHeap, s.GoTotal = m[0].Value.Uint64(), m[1].Value.Uint64()-m[2].Value.Uint64()
	s.CInUse, s.CHeld = uint64(C.c_heap_in_use()), uint64(C.c_heap_held())
	return s, nil
}
