package steps

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pgsdr/sdr/workflow"
)

func TestPoll(t *testing.T) {
	errNotYet := errors.New("not yet")
	tests := []struct {
		name     string
		doneAt   int   // call on which check reports done; 0 for never
		checkErr error // returned by check while not done
		wantErr  []error
	}{
		{name: "done at once", doneAt: 1},
		{name: "done after a few tries", doneAt: 3, checkErr: errNotYet},
		{name: "times out without error", wantErr: []error{context.DeadlineExceeded}},
		{name: "times out with the last check error", checkErr: errNotYet, wantErr: []error{context.DeadlineExceeded, errNotYet}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			calls := 0
			start := time.Now()
			err := poll(context.Background(), 50*time.Millisecond, time.Millisecond, "the test", func(ctx context.Context) (bool, error) {
				calls++
				if tt.doneAt > 0 && calls >= tt.doneAt {
					return true, nil
				}
				return false, tt.checkErr
			})
			if elapsed := time.Since(start); elapsed > 5*time.Second {
				t.Errorf("poll took %s with a 50ms timeout", elapsed)
			}
			if len(tt.wantErr) == 0 {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				if calls != tt.doneAt {
					t.Errorf("check called %d times, want %d", calls, tt.doneAt)
				}
				return
			}
			if err == nil {
				t.Fatal("expected an error, got nil")
			}
			for _, want := range tt.wantErr {
				if !errors.Is(err, want) {
					t.Errorf("error %v does not wrap %v", err, want)
				}
			}
		})
	}

	t.Run("done with an error is not done", func(t *testing.T) {
		err := poll(context.Background(), 50*time.Millisecond, time.Millisecond, "the test", func(ctx context.Context) (bool, error) {
			return true, errNotYet
		})
		if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, errNotYet) {
			t.Errorf("poll = %v, want a timeout wrapping %v", err, errNotYet)
		}
	})

	t.Run("an error that ends the wait ends it at once, not permanent", func(t *testing.T) {
		calls := 0
		gone := errors.New("PostgreSQL no longer runs")
		err := poll(context.Background(), time.Hour, time.Millisecond, "the test", func(ctx context.Context) (bool, error) {
			calls++
			if calls == 2 {
				return false, endWait(gone)
			}
			return false, errNotYet
		})
		if err != gone || calls != 2 {
			t.Errorf("poll = %v after %d checks, want %v after 2", err, calls, gone)
		}
		if workflow.IsPermanent(err) {
			t.Errorf("the error became permanent")
		}
	})

	t.Run("cancelled parent", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		start := time.Now()
		err := poll(ctx, time.Hour, time.Hour, "the test", func(ctx context.Context) (bool, error) {
			return false, nil
		})
		if !errors.Is(err, context.Canceled) {
			t.Errorf("poll = %v, want context.Canceled", err)
		}
		if elapsed := time.Since(start); elapsed > 5*time.Second {
			t.Errorf("poll took %s after its context was cancelled", elapsed)
		}
	})

	t.Run("check gets the bounded context", func(t *testing.T) {
		err := poll(context.Background(), time.Hour, time.Millisecond, "the test", func(ctx context.Context) (bool, error) {
			if _, ok := ctx.Deadline(); !ok {
				t.Error("check's context has no deadline")
			}
			return true, nil
		})
		if err != nil {
			t.Fatal(err)
		}
	})
}

func TestConninfoQuote(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"plain", "db1.example.com", "db1.example.com"},
		{"path", "/srv/pg/data.sdr/pgpass", "/srv/pg/data.sdr/pgpass"},
		{"empty", "", "''"},
		{"space", "my host", "'my host'"},
		{"quote", "o'brien", `'o\'brien'`},
		{"backslash", `a\b`, `'a\\b'`},
		{"quote and backslash", `a\'b`, `'a\\\'b'`},
		{"equals sign stays plain", "a=b", "a=b"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := conninfoQuote(tt.in); got != tt.want {
				t.Errorf("conninfoQuote(%q) = %s, want %s", tt.in, got, tt.want)
			}
		})
	}
}

func TestConfQuote(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"plain", "replica", "'replica'"},
		{"empty", "", "''"},
		{"quote", "it's", "'it''s'"},
		{"two quotes", "''", "''''''"},
		{"space", "a b", "'a b'"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := confQuote(tt.in); got != tt.want {
				t.Errorf("confQuote(%q) = %s, want %s", tt.in, got, tt.want)
			}
		})
	}
}

func TestPgIdent(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"plain", "sdr_repl", `"sdr_repl"`},
		{"upper case kept", "Repl", `"Repl"`},
		{"double quote", `a"b`, `"a""b"`},
		{"single quote", "o'brien", `"o'brien"`},
		{"space", "a b", `"a b"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := pgIdent(tt.in); got != tt.want {
				t.Errorf("pgIdent(%q) = %s, want %s", tt.in, got, tt.want)
			}
		})
	}
}

func TestPollKeepsTheCauseWhenTheLastCheckIsCutShort(t *testing.T) {
	cause := errors.New("password authentication failed")
	calls := 0
	err := poll(context.Background(), 60*time.Millisecond, 10*time.Millisecond, "x", func(ctx context.Context) (bool, error) {
		calls++
		if calls == 1 {
			return false, cause
		}
		<-ctx.Done() // this check runs into the end of the wait
		return false, ctx.Err()
	})
	if !errors.Is(err, cause) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("poll error %v, want it to wrap the earlier cause and the deadline", err)
	}
}

func TestNextPause(t *testing.T) {
	const long = time.Hour
	tests := []struct {
		name                 string
		prev, interval, left time.Duration
		want                 time.Duration
	}{
		{name: "first pause is short", prev: 0, interval: time.Second, left: long, want: pollFirst},
		{name: "doubles", prev: 25 * time.Millisecond, interval: time.Second, left: long, want: 50 * time.Millisecond},
		{name: "doubles again", prev: 200 * time.Millisecond, interval: time.Second, left: long, want: 400 * time.Millisecond},
		{name: "capped by the interval", prev: 800 * time.Millisecond, interval: time.Second, left: long, want: time.Second},
		{name: "stays at the interval", prev: time.Second, interval: time.Second, left: long, want: time.Second},
		{name: "interval below the first pause", prev: 0, interval: 5 * time.Millisecond, left: long, want: 5 * time.Millisecond},
		{name: "no interval polls at the first pause", prev: 0, interval: 0, left: long, want: pollFirst},
		{name: "never past the deadline", prev: 400 * time.Millisecond, interval: time.Second, left: 30 * time.Millisecond, want: 30 * time.Millisecond},
		{name: "deadline passed", prev: 400 * time.Millisecond, interval: time.Second, left: -time.Millisecond, want: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := nextPause(tt.prev, tt.interval, tt.left); got != tt.want {
				t.Errorf("nextPause(%s, %s, %s) = %s, want %s", tt.prev, tt.interval, tt.left, got, tt.want)
			}
		})
	}
}

// TestPollIsPrompt checks the timing of real waits. The bounds are loose
// (a busy machine) but each is far below what a wait that polled only
// every interval, or slept past its deadline, would take.
func TestPollIsPrompt(t *testing.T) {
	t.Run("sees a condition that comes true soon, long before the interval", func(t *testing.T) {
		start := time.Now()
		readyAt := start.Add(60 * time.Millisecond)
		calls := 0
		err := poll(context.Background(), time.Minute, 5*time.Second, "the test", func(ctx context.Context) (bool, error) {
			calls++
			return time.Now().After(readyAt), nil
		})
		elapsed := time.Since(start)
		if err != nil {
			t.Fatal(err)
		}
		if elapsed > 2*time.Second {
			t.Errorf("poll returned %s after start for a condition true after 60ms (interval 5s)", elapsed)
		}
		if calls < 2 || calls > 10 {
			t.Errorf("check called %d times, want a few (immediate, then backing off)", calls)
		}
	})
	t.Run("returns at its timeout, not after the next interval", func(t *testing.T) {
		start := time.Now()
		err := poll(context.Background(), 150*time.Millisecond, time.Hour, "the test", func(ctx context.Context) (bool, error) {
			return false, nil
		})
		elapsed := time.Since(start)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("poll = %v, want a deadline error", err)
		}
		if elapsed < 150*time.Millisecond || elapsed > 3*time.Second {
			t.Errorf("poll with a 150ms timeout returned after %s", elapsed)
		}
	})
	t.Run("returns at the parent's earlier deadline", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		start := time.Now()
		err := poll(ctx, time.Hour, time.Hour, "the test", func(ctx context.Context) (bool, error) {
			return false, nil
		})
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("poll = %v, want a deadline error", err)
		}
		if elapsed := time.Since(start); elapsed > 3*time.Second {
			t.Errorf("poll returned %s after start; the parent's deadline was 100ms", elapsed)
		}
	})
	t.Run("returns when the parent is cancelled during a pause", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(80*time.Millisecond, cancel)
		start := time.Now()
		err := poll(ctx, time.Hour, time.Hour, "the test", func(ctx context.Context) (bool, error) {
			return false, nil
		})
		if !errors.Is(err, context.Canceled) {
			t.Errorf("poll = %v, want context.Canceled", err)
		}
		if elapsed := time.Since(start); elapsed > 3*time.Second {
			t.Errorf("poll returned %s after start; the parent was cancelled after 80ms", elapsed)
		}
	})
}

func TestTogetherRunsAllAndKeepsTheFirstErrorInOrder(t *testing.T) {
	first, second := errors.New("first"), errors.New("second")
	var ran atomic.Int32
	started := make(chan struct{})
	err := together(
		func() error { <-started; ran.Add(1); return nil }, // waits for the last: they run at once
		func() error { ran.Add(1); time.Sleep(20 * time.Millisecond); return first },
		func() error { ran.Add(1); return second },
		func() error { ran.Add(1); close(started); return nil },
	)
	if err != first || ran.Load() != 4 {
		t.Fatalf("got %v after %d functions, want %v after 4", err, ran.Load(), first)
	}
	if err := together(func() error { return nil }); err != nil {
		t.Fatal(err)
	}
	err = together(func() error { return nil }, func() error { panic("boom") })
	var pe *workflow.PanicError
	if !errors.As(err, &pe) || pe.Value != "boom" {
		t.Fatalf("a panic: got %v", err)
	}
}

func TestLaterRunsAtOnceAndWaits(t *testing.T) {
	started := make(chan struct{})
	get := later(func() int { close(started); return 7 })
	select {
	case <-started:
	case <-time.After(5 * time.Second):
		t.Fatal("later did not start f before it was asked")
	}
	if get() != 7 || get() != 7 {
		t.Fatal("later did not return f's result every time")
	}
}
