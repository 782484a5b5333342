// Package parallel runs indexed jobs on a pool of workers, each with
// state of its own (an OpenCV extractor, a renderer): the one worker pool
// of the developer tools (data sets, evaluation).
package parallel

import (
	"context"
	"runtime"
	"sync"
)

// Workers returns n, or one per CPU when n ≤ 0.
func Workers(n int) int {
	if n <= 0 {
		return runtime.GOMAXPROCS(0)
	}
	return n
}

// Do runs job for every i in 0…n−1 on Workers(workers) goroutines. Each
// goroutine first calls setup for its own state and cleanup when done.
// Do stops handing out jobs at the first error (from setup or a job) or
// when ctx ends, waits for the jobs under way, and returns that error or
// ctx's.
func Do[S any](ctx context.Context, n, workers int, setup func() (S, func(), error), job func(s S, i int) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		mu       sync.Mutex
		firstErr error
		wg       sync.WaitGroup
	)
	fail := func(err error) {
		mu.Lock()
		if firstErr == nil {
			firstErr = err
		}
		mu.Unlock()
		cancel()
	}
	jobs := make(chan int)
	for range Workers(workers) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, cleanup, err := setup()
			if err != nil {
				fail(err)
				return
			}
			if cleanup != nil {
				defer cleanup()
			}
			for i := range jobs {
				if ctx.Err() != nil {
					continue // drain: Do stops feeding
				}
				if err := job(s, i); err != nil {
					fail(err)
				}
			}
		}()
	}
feed:
	for i := range n {
		select {
		case jobs <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(jobs)
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	if firstErr != nil {
		return firstErr
	}
	return context.Cause(ctx)
}
