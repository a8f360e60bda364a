package cluster

import (
	"errors"
	"fmt"
	"strings"
)

// Sentinel errors of the cluster package, grouped by when they can happen.
// Match them with errors.Is; the typed errors below carry the details.
var (
	// Loading and validating the config.

	// ErrBadConfig is wrapped by every *ConfigError.
	ErrBadConfig = errors.New("bad config")
	// ErrNoPassword means the replication password could not be read or is empty.
	ErrNoPassword = errors.New("replication password not available")

	// Reaching a node over SSH.

	// ErrHostKey means the node's SSH host key is not in known_hosts or has changed.
	ErrHostKey = errors.New("ssh host key not trusted")
	// ErrSSHAuth means the node refused the identity file's key.
	ErrSSHAuth = errors.New("ssh authentication failed")
	// ErrPoolClosed is returned by Pool.Get after Pool.Close.
	ErrPoolClosed = errors.New("node pool is closed")

	// Connecting to PostgreSQL.

	// ErrPasswordAuth means PostgreSQL rejected the replication password (SQLSTATE 28P01).
	ErrPasswordAuth = errors.New("password authentication failed")
	// ErrLoginRefused means PostgreSQL refused the login before any
	// password: pg_hba.conf has no line for the connection or rejects it,
	// or the role does not exist (SQLSTATE 28000).
	ErrLoginRefused = errors.New("login refused by the server")
)

// ConfigError is one problem in the config file. Field is the path of the
// setting, like "standby.nodes[1].data_dir" (empty when the file as a whole
// is the problem).
type ConfigError struct {
	File    string // the config file, if known
	Field   string
	Problem string
	err     error // underlying error (YAML, I/O), if any
}

func (e *ConfigError) Error() string {
	var b strings.Builder
	b.WriteString("config")
	if e.File != "" {
		b.WriteString(" ")
		b.WriteString(e.File)
	}
	b.WriteString(": ")
	if e.Field != "" {
		b.WriteString(e.Field)
		b.WriteString(": ")
	}
	b.WriteString(e.Problem)
	return b.String()
}

// Unwrap returns ErrBadConfig and the underlying error, if any.
func (e *ConfigError) Unwrap() []error {
	if e.err != nil {
		return []error{ErrBadConfig, e.err}
	}
	return []error{ErrBadConfig}
}

// CommandError is a command that ran on a node and exited non-zero (or was
// killed). Stderr holds the tail of what it wrote to standard error.
type CommandError struct {
	Node     string
	Cmd      string
	ExitCode int // -1 when the command ended without an exit status (killed by a signal)
	Stderr   string
}

func (e *CommandError) Error() string {
	msg := fmt.Sprintf("on %s: %q exited %d", e.Node, shorten(e.Cmd, 200), e.ExitCode)
	if e.ExitCode < 0 {
		msg = fmt.Sprintf("on %s: %q ended without an exit status", e.Node, shorten(e.Cmd, 200))
	}
	if tail := lastLines(e.Stderr, 3); tail != "" {
		msg += ": " + tail
	}
	return msg
}

// shorten cuts s to at most n bytes, marking the cut.
func shorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// lastLines returns the last n non-empty lines of s joined with " | ".
func lastLines(s string, n int) string {
	var out []string
	for _, l := range strings.Split(strings.TrimRight(s, "\n"), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	if len(out) > n {
		out = out[len(out)-n:]
	}
	return strings.Join(out, " | ")
}
