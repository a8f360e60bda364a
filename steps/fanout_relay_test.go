package steps

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeSink is a sink command: it reads its stdin (a pipe) into got, at the
// pace of gate (nil: as fast as it can), and fails after failAfter bytes
// (0: never) the way tar fails on a broken archive: it stops reading and
// exits with an error.
type fakeSink struct {
	name      string
	failAfter int
	gate      chan struct{} // one read per token, when set
	got       bytes.Buffer
	r         *io.PipeReader
	w         *io.PipeWriter
	done      chan error
	reads     atomic.Int64
}

var errBrokenArchive = errors.New("tar: Unexpected EOF in archive")

func newFakeSink(name string, failAfter int, gate chan struct{}) *fakeSink {
	f := &fakeSink{name: name, failAfter: failAfter, gate: gate, done: make(chan error, 1)}
	f.r, f.w = io.Pipe()
	go func() {
		buf := make([]byte, 4096)
		for {
			if f.gate != nil {
				<-f.gate
			}
			n, err := f.r.Read(buf)
			f.got.Write(buf[:n])
			f.reads.Add(1)
			if f.failAfter > 0 && f.got.Len() >= f.failAfter {
				f.r.CloseWithError(errBrokenArchive)
				f.done <- errBrokenArchive
				return
			}
			if err == io.EOF {
				f.done <- nil
				return
			}
		}
	}()
	return f
}

func (f *fakeSink) sink() *relaySink {
	return &relaySink{name: f.name, in: f.w, wait: func() error { return <-f.done }}
}

// feedStream writes data to w in chunks of size, as an SSH channel does.
func feedStream(w io.Writer, data []byte, size int) error {
	for len(data) > 0 {
		n := min(size, len(data))
		if _, err := w.Write(data[:n]); err != nil {
			return err
		}
		data = data[n:]
	}
	return nil
}

func TestRelayDeliversEveryByteToEverySink(t *testing.T) {
	data := make([]byte, 3<<20+123)
	rand.Read(data)
	cases := []struct {
		name  string
		sinks int
		chunk int
	}{
		{"one sink", 1, 32 << 10},
		{"main standby and two cascades", 3, 32 << 10},
		{"small writes", 2, 100},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var fakes []*fakeSink
			var sinks []*relaySink
			for i := 0; i < tc.sinks; i++ {
				f := newFakeSink("n"+string(rune('a'+i)), 0, nil)
				fakes = append(fakes, f)
				sinks = append(sinks, f.sink())
			}
			var failed atomic.Int32
			r := newRelay(sinks, func(error) { failed.Add(1) })
			if err := feedStream(r, data, tc.chunk); err != nil {
				t.Fatal(err)
			}
			if err := r.close(); err != nil {
				t.Fatal(err)
			}
			for _, f := range fakes {
				if !bytes.Equal(f.got.Bytes(), data) {
					t.Errorf("%s got %d bytes, want %d identical ones", f.name, f.got.Len(), len(data))
				}
			}
			if r.bytes() != int64(len(data)) || failed.Load() != 0 {
				t.Errorf("relay counted %d bytes, %d failures", r.bytes(), failed.Load())
			}
		})
	}
}

func TestRelaySlowestSinkPacesTheCopy(t *testing.T) {
	gate := make(chan struct{})
	slow := newFakeSink("slow", 0, gate)
	fast := newFakeSink("fast", 0, nil)
	r := newRelay([]*relaySink{fast.sink(), slow.sink()}, nil)
	const chunk = 1024
	var written atomic.Int64
	writerDone := make(chan error, 1)
	go func() {
		data := make([]byte, chunk)
		for i := 0; i < 10*relayDepth; i++ {
			if _, err := r.Write(data); err != nil {
				writerDone <- err
				return
			}
			written.Add(chunk)
		}
		writerDone <- nil
	}()
	// The slow sink reads nothing: the writer must stop after about the
	// queue's depth (plus what the pipe and the sink's writer hold).
	time.Sleep(200 * time.Millisecond)
	held := written.Load() / chunk
	if held > relayDepth+2 {
		t.Fatalf("the writer got %d chunks ahead of a sink that reads nothing; want at most %d", held, relayDepth+2)
	}
	if held < relayDepth {
		t.Fatalf("only %d chunks were queued before the writer blocked; want the queue's depth %d", held, relayDepth)
	}
	// Let the slow sink read: the copy goes on and completes.
	go func() {
		for {
			select {
			case gate <- struct{}{}:
			case <-time.After(5 * time.Second):
				return
			}
		}
	}()
	select {
	case err := <-writerDone:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the copy did not go on once the slow sink read")
	}
	if err := r.close(); err != nil {
		t.Fatal(err)
	}
	if slow.got.Len() != 10*relayDepth*chunk || fast.got.Len() != 10*relayDepth*chunk {
		t.Fatalf("sinks got %d and %d bytes", slow.got.Len(), fast.got.Len())
	}
}

func TestRelayAFailedSinkFailsTheCopy(t *testing.T) {
	bad := newFakeSink("dc2-b", 64<<10, nil)
	good := newFakeSink("dc2-a", 0, nil)
	var mu sync.Mutex
	var reported []error
	r := newRelay([]*relaySink{good.sink(), bad.sink()}, func(err error) {
		mu.Lock()
		reported = append(reported, err)
		mu.Unlock()
	})
	data := make([]byte, 4<<20)
	err := feedStream(r, data, 32<<10)
	if err == nil {
		t.Fatal("the stream went through a sink that failed")
	}
	cerr := r.close()
	if !errors.Is(cerr, errBrokenArchive) {
		t.Fatalf("close = %v, want the sink's own error", cerr)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(reported) != 1 || !errors.Is(reported[0], errBrokenArchive) {
		t.Fatalf("fail called with %v, want once with the sink's error", reported)
	}
}

func TestRelayMark(t *testing.T) {
	cases := []struct {
		name    string
		mark    int64
		markErr error
		calls   int
		wantErr bool
	}{
		{"fires once past the mark", 10 << 10, nil, 1, false},
		{"never reached", 1 << 30, nil, 0, false},
		{"an error fails the copy", 10 << 10, errors.New("failpoint"), 1, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeSink("n", 0, nil)
			r := newRelay([]*relaySink{f.sink()}, nil)
			calls := 0
			r.at(tc.mark, func() error { calls++; return tc.markErr })
			err := feedStream(r, make([]byte, 100<<10), 4<<10)
			cerr := r.close()
			if calls != tc.calls || (err != nil) != tc.wantErr || (cerr != nil) != tc.wantErr {
				t.Fatalf("calls %d, write error %v, close error %v", calls, err, cerr)
			}
		})
	}
}
