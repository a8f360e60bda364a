package steps

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestFlightAsksOnceForCallersThatOverlap(t *testing.T) {
	var f flight[int]
	var calls atomic.Int32
	release := make(chan struct{})
	var wg sync.WaitGroup
	got := make([]int, 5)
	for i := range got {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v, err := f.do("a", func() (int, error) {
				calls.Add(1)
				<-release
				return 7, nil
			})
			if err != nil {
				t.Error(err)
			}
			got[i] = v
		}()
	}
	time.Sleep(20 * time.Millisecond)
	close(release)
	wg.Wait()
	if n := calls.Load(); n != 1 {
		t.Errorf("%d calls, want 1", n)
	}
	for i, v := range got {
		if v != 7 {
			t.Errorf("caller %d got %d, want 7", i, v)
		}
	}
	// Later callers get the value kept; another key is asked for.
	if v, _ := f.do("a", func() (int, error) { calls.Add(1); return 8, nil }); v != 7 || calls.Load() != 1 {
		t.Errorf("kept value: got %d after %d calls, want 7 after 1", v, calls.Load())
	}
	if v, _ := f.do("b", func() (int, error) { return 9, nil }); v != 9 {
		t.Errorf("key b: got %d, want 9", v)
	}
}

func TestFlightForgetsAFailure(t *testing.T) {
	var f flight[int]
	boom := errors.New("boom")
	if _, err := f.do("a", func() (int, error) { return 0, boom }); !errors.Is(err, boom) {
		t.Fatalf("err %v, want boom", err)
	}
	v, err := f.do("a", func() (int, error) { return 3, nil })
	if err != nil || v != 3 {
		t.Fatalf("after a failure: %d, %v; want 3 asked again", v, err)
	}
}

func TestFlightForgetsAPanicAndTellsTheWaiters(t *testing.T) {
	var f flight[int]
	started := make(chan struct{})
	release := make(chan struct{})
	type answer struct {
		v   int
		err error
	}
	waited := make(chan answer, 1)
	go func() {
		defer func() { _ = recover() }()
		_, _ = f.do("a", func() (int, error) {
			close(started)
			<-release
			panic("bad")
		})
	}()
	<-started
	go func() {
		v, err := f.do("a", func() (int, error) { return 1, nil })
		waited <- answer{v, err}
	}()
	time.Sleep(20 * time.Millisecond)
	close(release)
	// The waiter either waited for the call that panicked (an error) or
	// came after it and asked itself (1); never a zero value without error.
	if a := <-waited; a.err == nil && a.v != 1 {
		t.Errorf("a caller beside a call that panicked got %d and no error", a.v)
	}
	if v, err := f.do("a", func() (int, error) { return 5, nil }); err != nil || v != 5 {
		t.Errorf("after a panic: %d, %v; want 5 asked again", v, err)
	}
}

func TestFlightLeaderTeachesTheWaiters(t *testing.T) {
	var f flight[int]
	learn, ok := f.lead("a")
	if !ok {
		t.Fatal("lead of a new key: not the leader")
	}
	if _, again := f.lead("a"); again {
		t.Fatal("a second lead of a key being learned: leader too")
	}
	got := make(chan int, 1)
	go func() {
		v, _ := f.do("a", func() (int, error) { t.Error("do called fn while a leader learns"); return 0, nil })
		got <- v
	}()
	time.Sleep(20 * time.Millisecond)
	select {
	case v := <-got:
		t.Fatalf("do returned %d before the leader learned", v)
	default:
	}
	learn(5, nil)
	learn(6, nil) // only the first counts
	if v := <-got; v != 5 {
		t.Fatalf("waiter got %d, want 5", v)
	}
	if _, again := f.lead("a"); again {
		t.Fatal("lead of a known key: leader")
	}
}

func TestFlightLeaderFailureIsForgotten(t *testing.T) {
	var f flight[int]
	learn, _ := f.lead("a")
	boom := errors.New("boom")
	waited := make(chan error, 1)
	go func() {
		_, err := f.do("a", func() (int, error) { return 0, errors.New("asked while the leader learned") })
		waited <- err
	}()
	time.Sleep(20 * time.Millisecond)
	learn(0, boom)
	if err := <-waited; !errors.Is(err, boom) {
		t.Fatalf("waiter got %v, want the leader's error", err)
	}
	if v, err := f.do("a", func() (int, error) { return 4, nil }); err != nil || v != 4 {
		t.Fatalf("after the leader's failure: %d, %v; want 4 asked again", v, err)
	}
}
