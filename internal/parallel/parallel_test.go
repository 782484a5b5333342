package parallel

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
)

func TestDo(t *testing.T) {
	t.Run("every job once, state per worker", func(t *testing.T) {
		var seen [100]atomic.Int32
		var setups, cleanups atomic.Int32
		err := Do(context.Background(), len(seen), 4, func() (*int, func(), error) {
			setups.Add(1)
			return new(int), func() { cleanups.Add(1) }, nil
		}, func(s *int, i int) error {
			*s++
			seen[i].Add(1)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		for i := range seen {
			if seen[i].Load() != 1 {
				t.Fatalf("job %d ran %d times", i, seen[i].Load())
			}
		}
		if setups.Load() != 4 || cleanups.Load() != 4 {
			t.Errorf("%d setups, %d cleanups, want 4 each", setups.Load(), cleanups.Load())
		}
	})
	t.Run("first error stops", func(t *testing.T) {
		boom := errors.New("boom")
		var ran atomic.Int32
		failing := make(chan struct{})
		err := Do(context.Background(), 10000, 2, func() (struct{}, func(), error) { return struct{}{}, nil, nil },
			func(_ struct{}, i int) error {
				ran.Add(1)
				switch {
				case i == 5:
					close(failing)
					return boom
				case i > 5:
					// However the workers are scheduled, later jobs
					// run only once the error is on its way.
					<-failing
				}
				return nil
			})
		if !errors.Is(err, boom) || ran.Load() > 100 {
			t.Fatalf("err %v after %d jobs", err, ran.Load())
		}
	})
	t.Run("setup error", func(t *testing.T) {
		bad := errors.New("no renderer")
		err := Do(context.Background(), 5, 2, func() (int, func(), error) { return 0, nil, bad }, func(int, int) error { return nil })
		if !errors.Is(err, bad) {
			t.Fatal(err)
		}
	})
	t.Run("cancelled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		err := Do(ctx, 5, 2, func() (int, func(), error) { return 0, nil, nil }, func(int, int) error { return nil })
		if !errors.Is(err, context.Canceled) {
			t.Fatal(err)
		}
	})
}
