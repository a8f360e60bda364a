package main

import (
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// terminalFD returns the file descriptor of w when w is a terminal.
func terminalFD(w io.Writer) (int, bool) {
	f, ok := w.(*os.File)
	if !ok {
		return 0, false
	}
	fd := int(f.Fd())
	if _, err := unix.IoctlGetTermios(fd, unix.TCGETS); err != nil {
		return 0, false
	}
	return fd, true
}

// terminalSize returns the columns and rows of the terminal fd; 80x24
// when the terminal does not say.
func terminalSize(fd int) (cols, rows int) {
	ws, err := unix.IoctlGetWinsize(fd, unix.TIOCGWINSZ)
	if err != nil || ws.Col == 0 || ws.Row == 0 {
		return 80, 24
	}
	return int(ws.Col), int(ws.Row)
}

// Terminal control sequences (ECMA-48), understood by every terminal
// emulator in use.
const (
	termEraseLine  = "\r\x1b[K" // to the start of the line, erase it
	termHome       = "\x1b[H"   // cursor to the top left
	termClear      = "\x1b[2J"  // erase the screen
	termEraseToEOL = "\x1b[K"   // erase to the end of the line
	termEraseBelow = "\x1b[J"   // erase from the cursor to the end of the screen
)

// cutRunes cuts s to at most n runes.
func cutRunes(s string, n int) string {
	if n <= 0 {
		return ""
	}
	i := 0
	for j := range s {
		if i == n {
			return s[:j]
		}
		i++
	}
	return s
}
