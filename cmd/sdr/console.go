package main

import (
	"io"
	"sync"
)

// console is where sdr talks to the operator while a run goes on (stderr).
// Log lines go through Write. On a terminal, the console also keeps one
// progress line below the log lines: it is redrawn in place (\r) as the
// work advances, put back under each new log line, and erased when the
// work ends. On anything else (a pipe, a file) there is no such line:
// progress comes as plain log lines.
type console struct {
	mu   sync.Mutex
	w    io.Writer
	tty  bool
	fd   int
	line string // the progress line shown now; "" when none
}

func newConsole(w io.Writer) *console {
	fd, tty := terminalFD(w)
	return &console{w: w, tty: tty, fd: fd}
}

// Write writes one or more log lines, keeping the progress line below them.
func (c *console) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.line == "" {
		return c.w.Write(p)
	}
	if _, err := io.WriteString(c.w, termEraseLine); err != nil {
		return 0, err
	}
	n, err := c.w.Write(p)
	if err != nil {
		return n, err
	}
	_, err = io.WriteString(c.w, c.line)
	return n, err
}

// Sync lets the console serve as a zap WriteSyncer.
func (c *console) Sync() error { return nil }

// setLine shows s as the progress line (a terminal only), cut to the
// terminal's width; "" erases it.
func (c *console) setLine(s string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.tty {
		return
	}
	if s != "" {
		s = cutRunes(s, c.width())
	}
	if s == c.line {
		return
	}
	if c.line != "" || s != "" {
		_, _ = io.WriteString(c.w, termEraseLine+s)
	}
	c.line = s
}

// width is how many runes a progress line may have: one less than the
// terminal's columns, so the cursor never wraps.
func (c *console) width() int {
	cols, _ := terminalSize(c.fd)
	return cols - 1
}

// clear erases the progress line.
func (c *console) clear() { c.setLine("") }
