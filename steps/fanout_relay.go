package steps

import (
	"errors"
	"fmt"
	"io"
	"sync"
)

// relay passes one stream (the fan-out copy's tar stream, as pg_basebackup
// writes it on the main standby) on to several sinks at once (tar -x on
// every DR node), as an io.Writer for the source's stdout.
//
// Buffering is bounded: each sink has a queue of relayDepth chunks, and a
// Write returns only when every sink has taken the chunk into its queue.
// So the slowest sink paces the copy: its full queue blocks the Write,
// which blocks the SSH channel and, through it, pg_basebackup and the
// primary's walsender. A chunk is shared by the queues, never copied per
// sink: at most about (relayDepth + 2) chunks per sink are held.
//
// A sink that fails (its command exits early, or writing to it fails)
// fails the whole copy: the relay calls fail once with the error, so that
// the caller ends the source, and every later Write returns that error.
type relay struct {
	sinks []*relaySink
	fail  func(error)

	mu       sync.Mutex
	n        int64 // bytes taken
	err      error // the first failure
	mark     int64 // at this many bytes, onMark is called once
	onMark   func() error
	markDone bool
}

// relayDepth is the number of chunks queued per sink.
const relayDepth = 64

// relaySink is one destination of the relay.
type relaySink struct {
	name string
	in   io.WriteCloser // the sink command's stdin
	wait func() error   // waits for the sink command to end, after in is closed

	q    chan []byte
	done chan struct{} // closed when the sink ended; err is set then
	err  error
}

// newRelay starts a writer goroutine per sink. fail is called at most
// once, with the first sink's failure.
func newRelay(sinks []*relaySink, fail func(error)) *relay {
	r := &relay{sinks: sinks, fail: fail}
	for _, s := range sinks {
		s.q = make(chan []byte, relayDepth)
		s.done = make(chan struct{})
		go r.feed(s)
	}
	return r
}

// at makes the relay call f once, when the stream has passed n bytes
// (used for a failpoint inside the copy). An error from f fails the copy.
func (r *relay) at(n int64, f func() error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.mark, r.onMark = n, f
}

// feed writes the sink's queue to its command. On a write error it stops
// writing, closes the command's stdin and waits for the command, whose
// own error (tar's message) explains more than a broken pipe.
func (r *relay) feed(s *relaySink) {
	defer close(s.done)
	var werr error
	for b := range s.q {
		if _, werr = s.in.Write(b); werr != nil {
			break
		}
	}
	cerr := s.in.Close()
	err := s.wait()
	switch {
	case err != nil:
		s.err = err
	case werr != nil:
		s.err = werr
	case cerr != nil:
		s.err = cerr
	}
	if werr != nil || err != nil {
		r.failed(fmt.Errorf("while unpacking the copy on %s: %w", s.name, s.err))
	}
}

// failed records the first failure and reports it to fail.
func (r *relay) failed(err error) {
	r.mu.Lock()
	first := r.err == nil
	if first {
		r.err = err
	}
	r.mu.Unlock()
	if first && r.fail != nil {
		r.fail(err)
	}
}

// Write queues a copy of p for every sink, waiting while a sink's queue is
// full. It fails once the copy has failed.
func (r *relay) Write(p []byte) (int, error) {
	r.mu.Lock()
	err := r.err
	r.mu.Unlock()
	if err != nil {
		return 0, err
	}
	b := append([]byte(nil), p...)
	for _, s := range r.sinks {
		select {
		case s.q <- b:
		case <-s.done:
			// It ended before the stream did: feed has reported why, or
			// it exited 0 without reading everything.
			r.failed(fmt.Errorf("while unpacking the copy on %s: the command ended before the copy did (%v)", s.name, s.err))
			r.mu.Lock()
			err := r.err
			r.mu.Unlock()
			return 0, err
		}
	}
	r.mu.Lock()
	r.n += int64(len(p))
	var mark func() error
	if r.onMark != nil && !r.markDone && r.n >= r.mark {
		r.markDone, mark = true, r.onMark
	}
	r.mu.Unlock()
	if mark != nil {
		if err := mark(); err != nil {
			r.failed(err)
			return 0, err
		}
	}
	return len(p), nil
}

// close ends the stream: every sink's queue is closed, so that each sink
// writes what it holds, reads EOF and ends; close waits for all of them.
// It returns the relay's first failure, and every sink's own error,
// joined. Call it once, after the source has ended (or been ended).
func (r *relay) close() error {
	for _, s := range r.sinks {
		close(s.q)
	}
	var errs []error
	for _, s := range r.sinks {
		<-s.done
		if s.err != nil {
			errs = append(errs, fmt.Errorf("while unpacking the copy on %s: %w", s.name, s.err))
		}
	}
	r.mu.Lock()
	first := r.err
	r.mu.Unlock()
	if first != nil && !containsErr(errs, first) {
		errs = append([]error{first}, errs...)
	}
	return errors.Join(errs...)
}

// failure is the relay's first failure so far, or nil.
func (r *relay) failure() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.err
}

// bytes is how much of the stream has passed.
func (r *relay) bytes() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n
}

func containsErr(errs []error, e error) bool {
	for _, x := range errs {
		if x.Error() == e.Error() {
			return true
		}
	}
	return false
}
