// Package term runs commands in a real terminal for tests: a private tmux
// server (its own socket, so nothing else's sessions are touched), one
// detached session per command, and the screen read back with
// capture-pane, as a person would see it.
package term

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// ErrNoTmux is returned by New when tmux is not installed.
var ErrNoTmux = errors.New("tmux is not installed")

// Server is a private tmux server.
type Server struct {
	tmux   string
	socket string // a path, given with -S
}

// New starts nothing yet: the server starts with the first session. Its
// socket lives in dir (which must be short enough for a Unix socket path).
func New(dir string) (*Server, error) {
	tmux, err := exec.LookPath("tmux")
	if err != nil {
		return nil, ErrNoTmux
	}
	return &Server{tmux: tmux, socket: filepath.Join(dir, "tmux.sock")}, nil
}

func (s *Server) run(ctx context.Context, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, s.tmux, append([]string{"-S", s.socket, "-f", "/dev/null"}, args...)...)
	cmd.Env = append(os.Environ(), "TERM=xterm-256color")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("while running tmux %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// Start runs shell command line in a new detached session name of cols x
// rows. When the command ends, the pane stays (remain-on-exit), so its
// last screen can still be read.
func (s *Server) Start(ctx context.Context, name string, cols, rows int, command string) error {
	if _, err := s.run(ctx, "new-session", "-d", "-s", name, "-x", fmt.Sprint(cols), "-y", fmt.Sprint(rows), command); err != nil {
		return err
	}
	_, err := s.run(ctx, "set-option", "-t", name, "remain-on-exit", "on")
	return err
}

// Screen returns what the pane of session name shows now, one string per
// row, trailing blanks removed.
func (s *Server) Screen(ctx context.Context, name string) ([]string, error) {
	out, err := s.run(ctx, "capture-pane", "-p", "-t", name)
	if err != nil {
		return nil, err
	}
	return strings.Split(strings.TrimRight(out, "\n"), "\n"), nil
}

// History returns everything the pane showed that is still kept: the
// lines that scrolled off the top, then the screen.
func (s *Server) History(ctx context.Context, name string) (string, error) {
	return s.run(ctx, "capture-pane", "-p", "-S", "-", "-t", name)
}

// Dead reports whether the command of session name has ended.
func (s *Server) Dead(ctx context.Context, name string) (bool, error) {
	out, err := s.run(ctx, "display-message", "-p", "-t", name, "#{pane_dead}")
	if err != nil {
		return false, err
	}
	return strings.TrimSpace(out) == "1", nil
}

// WaitScreen polls the screen of session name every 50 ms until ok holds
// or timeout passes, and returns the last screen.
func (s *Server) WaitScreen(ctx context.Context, name string, timeout time.Duration, ok func([]string) bool) ([]string, error) {
	deadline := time.Now().Add(timeout)
	for {
		scr, err := s.Screen(ctx, name)
		if err != nil {
			return nil, err
		}
		if ok(scr) {
			return scr, nil
		}
		if time.Now().After(deadline) {
			return scr, fmt.Errorf("screen of %s not as expected after %s", name, timeout)
		}
		select {
		case <-ctx.Done():
			return scr, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Close ends the server and every session in it.
func (s *Server) Close() error {
	_, err := s.run(context.Background(), "kill-server")
	os.Remove(s.socket)
	return err
}
