package cluster

import (
	"net"
	"testing"
	"time"
)

// noDeadlineConn is a net.Conn that refuses deadlines, like an SSH channel.
type noDeadlineConn struct{ net.Conn }

func (noDeadlineConn) SetDeadline(time.Time) error      { return errNoDeadline }
func (noDeadlineConn) SetReadDeadline(time.Time) error  { return errNoDeadline }
func (noDeadlineConn) SetWriteDeadline(time.Time) error { return errNoDeadline }

var errNoDeadline = &net.OpError{Op: "set", Err: net.ErrClosed}

func TestDeadlineConnUnblocksRead(t *testing.T) {
	tests := []struct {
		name     string
		deadline func() time.Time
	}{
		{"deadline in the future", func() time.Time { return time.Now().Add(50 * time.Millisecond) }},
		{"deadline in the past (how pgx cancels)", func() time.Time { return time.Unix(1, 0) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := net.Pipe()
			defer b.Close()
			c := withDeadlines(noDeadlineConn{a})
			done := make(chan error, 1)
			go func() {
				_, err := c.Read(make([]byte, 1))
				done <- err
			}()
			time.Sleep(10 * time.Millisecond)
			if err := c.SetDeadline(tt.deadline()); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-done:
				if err == nil {
					t.Fatal("read returned no error")
				}
			case <-time.After(5 * time.Second):
				t.Fatal("read still blocked after the deadline")
			}
		})
	}
}

func TestDeadlineConnZeroClearsTimer(t *testing.T) {
	a, b := net.Pipe()
	defer b.Close()
	c := withDeadlines(noDeadlineConn{a})
	_ = c.SetDeadline(time.Now().Add(20 * time.Millisecond))
	_ = c.SetDeadline(time.Time{})
	time.Sleep(60 * time.Millisecond)
	go func() { _, _ = b.Write([]byte("x")) }()
	buf := make([]byte, 1)
	if _, err := c.Read(buf); err != nil {
		t.Fatalf("connection closed although the deadline was cleared: %v", err)
	}
}
