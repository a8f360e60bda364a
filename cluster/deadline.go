package cluster

import (
	"net"
	"sync"
	"time"
)

// deadlineConn gives a connection that cannot keep deadlines (an SSH
// channel) a deadline that works the only way it can: when the deadline
// passes, the connection is closed, so a blocked read or write returns.
// pgx cancels a query by setting a deadline in the past, so without this a
// stalled server through an SSH channel would hang its caller forever.
type deadlineConn struct {
	net.Conn
	mu    sync.Mutex
	timer *time.Timer
}

func withDeadlines(c net.Conn) net.Conn { return &deadlineConn{Conn: c} }

func (c *deadlineConn) SetDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.timer != nil {
		c.timer.Stop()
		c.timer = nil
	}
	if t.IsZero() {
		return nil
	}
	d := time.Until(t)
	if d <= 0 {
		return c.Conn.Close()
	}
	c.timer = time.AfterFunc(d, func() { _ = c.Conn.Close() })
	return nil
}

func (c *deadlineConn) SetReadDeadline(t time.Time) error  { return c.SetDeadline(t) }
func (c *deadlineConn) SetWriteDeadline(t time.Time) error { return c.SetDeadline(t) }

// CloseWrite half-closes the connection when the one underneath can (an
// SSH channel can: it sends EOF).
func (c *deadlineConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

func (c *deadlineConn) Close() error {
	c.mu.Lock()
	if c.timer != nil {
		c.timer.Stop()
		c.timer = nil
	}
	c.mu.Unlock()
	return c.Conn.Close()
}
