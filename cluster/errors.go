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
	// ErrSSHFiles means ssh.identity_file or ssh.known_hosts cannot be
	// used (missing, unreadable, not a key): no rerun gets past it.
	ErrSSHFiles = errors.New("an ssh file of the config is unusable")
	// ErrPoolClosed is returned by Pool.Get after Pool.Close.
	ErrPoolClosed = errors.New("node pool is closed")

	// Connecting to PostgreSQL.

	// ErrPasswordAuth means PostgreSQL rejected the replication password (SQLSTATE 28P01).
	ErrPasswordAuth = errors.New("password authentication failed")
	// ErrLoginRefused means PostgreSQL refused the login before any
	// password: pg_hba.conf has no line for the connection or rejects it,
	// or the role does not exist (SQLSTATE 28000).
	ErrLoginRefused = errors.New("login refused by the server")

	// Working on a node's files and processes (fsops.go, nodelock.go,
	// controldata.go). A missing path is reported with fs.ErrNotExist.

	// ErrExist means a rename's target already exists; nothing was replaced.
	ErrExist = errors.New("target already exists")
	// ErrCrossDevice means a rename would cross a filesystem or mount
	// boundary (or move a mount point), so it would have to copy; sdr
	// never copies instead of renaming.
	ErrCrossDevice = errors.New("not on the same filesystem and mount")
	// ErrInUse means a live PostgreSQL server (postmaster.pid names a
	// running process whose working directory is that directory) runs in a
	// directory sdr was about to move or delete.
	ErrInUse = errors.New("a PostgreSQL server is running there")
	// ErrNodeLocked means another run holds the node's lock; the error
	// text names the holder.
	ErrNodeLocked = errors.New("node is locked by another run")
	// ErrBadControlData means pg_controldata's output lacks a field or
	// holds a value that cannot be read.
	ErrBadControlData = errors.New("unreadable pg_controldata output")
	// ErrReadOnly means a change was asked of a node through an Access
	// made by ReadOnly (sdr plan): it was refused before reaching the node.
	ErrReadOnly = errors.New("refused: this access only reads")
)

// ConfigError is one problem in the config file. Field is the path of the
// setting, like "clusters.dc2.nodes[1].data_dir" (empty when the file as a whole
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
// killed). Stderr holds the tail of what it wrote to standard error (up to
// 64 KiB); Error() shows the lines of it that explain the failure (see
// summarizeStderr).
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
	if why := summarizeStderr(e.Stderr); why != "" {
		msg += ": " + why
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
