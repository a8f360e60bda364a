package steps

import (
	"errors"
	"sync"
)

// flight remembers, by key, a value that costs a remote action to learn
// (a node's layout, where its configuration is): callers that ask while it
// is being learned wait for that one answer instead of asking again. A
// failure is given to the callers that waited and forgotten, so the next
// call asks again.
type flight[T any] struct {
	mu    sync.Mutex
	calls map[string]*flightCall[T]
}

type flightCall[T any] struct {
	done chan struct{}
	v    T
	err  error
}

// do returns the value for key, calling fn if no call for key succeeded
// or is under way.
func (f *flight[T]) do(key string, fn func() (T, error)) (T, error) {
	f.mu.Lock()
	if f.calls == nil {
		f.calls = map[string]*flightCall[T]{}
	}
	if c, ok := f.calls[key]; ok {
		f.mu.Unlock()
		<-c.done
		return c.v, c.err
	}
	c := &flightCall[T]{done: make(chan struct{})}
	f.calls[key] = c
	f.mu.Unlock()

	// A panic in fn gives the waiters an error and forgets the key; the
	// panic goes on to the caller.
	c.err = errFlightPanicked
	defer func() {
		if c.err != nil {
			f.forget(key, c)
		}
		close(c.done)
	}()
	c.v, c.err = fn()
	return c.v, c.err
}

// lead makes the caller the one that learns key's value when no call for
// key succeeded or is under way: callers of do then wait until learn is
// called with the value or an error (an error is given to them and
// forgotten, as a failed call of do is). Only the first call of learn
// counts; the leader must call it on every path. ok is false, and learn
// nil, when the value is known or being learned.
func (f *flight[T]) lead(key string) (learn func(T, error), ok bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.calls == nil {
		f.calls = map[string]*flightCall[T]{}
	}
	if _, busy := f.calls[key]; busy {
		return nil, false
	}
	c := &flightCall[T]{done: make(chan struct{})}
	f.calls[key] = c
	var once sync.Once
	return func(v T, err error) {
		once.Do(func() {
			c.v, c.err = v, err
			if err != nil {
				f.forget(key, c)
			}
			close(c.done)
		})
	}, true
}

var errFlightPanicked = errors.New("the call that was learning this panicked")

func (f *flight[T]) forget(key string, c *flightCall[T]) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.calls[key] == c {
		delete(f.calls, key)
	}
}

// set records v for key, as a call that succeeded would.
func (f *flight[T]) set(key string, v T) {
	c := &flightCall[T]{done: make(chan struct{}), v: v}
	close(c.done)
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.calls == nil {
		f.calls = map[string]*flightCall[T]{}
	}
	f.calls[key] = c
}
