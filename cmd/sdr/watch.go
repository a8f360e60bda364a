package main

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/urfave/cli/v2"
)

// watchOpts are the flags of status --watch.
type watchOpts struct {
	interval time.Duration
	count    int // refreshes before it ends; 0: until the context ends
	history  int
}

// runWatch shows the status every w.interval until the context ends
// (Ctrl-C, SIGTERM, SIGHUP: exit 0) or after w.count refreshes. On a
// terminal each refresh redraws the screen in place, cut to its size; on
// anything else each refresh follows a separator line. A failure of the
// first refresh ends the command with its exit code; a later one is shown
// and the watch goes on.
func runWatch(c *cli.Context, d deps, g globals, w watchOpts) error {
	out := c.App.Writer
	fd, tty := terminalFD(out)
	ctx := c.Context
	timer := time.NewTimer(0)
	defer timer.Stop()
	for i := 1; ; i++ {
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
		}
		var body bytes.Buffer
		doc, err := loadStatus(c, d, g, w.history)
		if ctx.Err() != nil {
			return nil // stopped while the nodes were asked: their answers are cut short
		}
		switch {
		case err != nil && i == 1:
			return err
		case err != nil:
			fmt.Fprintf(&body, "sdr: %s\n(refreshing again in %s)\n", oneLine(err), w.interval)
		default:
			printStatus(&body, doc, d.now())
		}
		now := d.now()
		head := fmt.Sprintf("sdr status, every %s (Ctrl-C ends)", w.interval)
		stamp := now.Local().Format("2006-01-02 15:04:05")
		if tty {
			cols, rows := terminalSize(fd)
			drawScreen(out, head, stamp, body.String(), cols, rows, i == 1)
		} else {
			fmt.Fprintf(out, "=== %s: refresh %d, %s ===\n%s\n", stamp, i, head, body.String())
		}
		if w.count > 0 && i >= w.count {
			return nil
		}
		timer.Reset(w.interval)
	}
}

// drawScreen redraws a terminal of cols x rows in place: the header with
// the time on the right, then the body, every line cut to the width and
// the body cut to the height. The first draw clears the screen.
func drawScreen(w io.Writer, head, stamp, body string, cols, rows int, first bool) {
	var b strings.Builder
	if first {
		b.WriteString(termHome + termClear)
	}
	b.WriteString(termHome)
	line := func(s string) {
		b.WriteString(cutRunes(s, cols-1))
		b.WriteString(termEraseToEOL + "\n")
	}
	pad := cols - 1 - len(head) - len(stamp)
	if pad < 1 {
		pad = 1
	}
	line(head + strings.Repeat(" ", pad) + stamp)
	line("")
	lines := strings.Split(strings.TrimRight(body, "\n"), "\n")
	room := max(rows-3, 1) // header, blank line, and the line the cursor rests on
	if len(lines) > room {
		cut := len(lines) - room + 1
		lines = append(lines[:room-1], fmt.Sprintf("... %d more lines: a taller window shows them", cut))
	}
	for _, l := range lines {
		line(l)
	}
	b.WriteString(termEraseBelow)
	_, _ = io.WriteString(w, b.String())
}
