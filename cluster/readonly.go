package cluster

import (
	"context"
	"fmt"
	"io/fs"
	"path"
	"strings"
)

// ReadOnly wraps a so that it can only look: WriteFile and Start are
// refused, and Run runs only a command that reads (readOnlyCommand): one
// of the read-only primitives of this package (ProbeDataDir, StatPaths,
// ReadControlData), or one simple command of a short list (test, df,
// cat, ls, stat, readlink, pg_controldata, pg_ctl status, postgres
// --version) with no shell operators. Everything else fails with an error
// wrapping ErrReadOnly before anything reaches the node. PostgreSQL
// sessions opened through it (ConnectAdmin, ConnectReplUser) run with
// default_transaction_read_only on, so that SQL that writes (CREATE,
// ALTER ROLE, DROP ...) fails too; functions that act without writing
// tables (pg_reload_conf, slot functions, ALTER SYSTEM) are not stopped
// by that, and the code that plans must not call them.
//
// `sdr plan` reaches every node through it: a plan that tried to change a
// node fails instead of changing it.
func ReadOnly(a Access) Access {
	if IsReadOnly(a) {
		return a
	}
	return &readOnlyAccess{Access: a}
}

// IsReadOnly reports whether a was made by ReadOnly.
func IsReadOnly(a Access) bool {
	_, ok := a.(*readOnlyAccess)
	return ok
}

type readOnlyAccess struct{ Access }

func (r *readOnlyAccess) refuse(what string) error {
	return fmt.Errorf("on %s: %w: %s", r.Node().Name, ErrReadOnly, what)
}

func (r *readOnlyAccess) Run(ctx context.Context, cmd string, opts RunOpts) ([]byte, error) {
	if opts.Stdin != nil {
		return nil, r.refuse("a command fed on stdin: " + shorten(cmd, 120))
	}
	if !readOnlyCommand(cmd) {
		return nil, r.refuse("a command that may change something: " + shorten(cmd, 120))
	}
	return r.Access.Run(ctx, cmd, opts)
}

func (r *readOnlyAccess) Start(_ context.Context, cmd string, _ RunOpts) (Proc, error) {
	return nil, r.refuse("starting " + shorten(cmd, 120))
}

func (r *readOnlyAccess) WriteFile(_ context.Context, p string, _ []byte, _ fs.FileMode) error {
	return r.refuse("writing " + p)
}

// readOnlyMark starts the scripts of the primitives that only read
// (runReadScript); ReadOnly lets them run.
const readOnlyMark = "# sdr: reads only\n"

// ReadOnlyScript marks a script that only reads (it changes nothing on
// the node) so that a ReadOnly access runs it: the probes of the steps'
// checks, which a plan runs. Mark nothing that writes: ReadOnly trusts
// the mark.
func ReadOnlyScript(script string) string { return readOnlyMark + script }

// readOnlyPrograms are the programs ReadOnly runs as a simple command, and
// what their arguments must be (nil: any).
var readOnlyPrograms = map[string]func(args []string) bool{
	"test":           nil,
	"df":             nil,
	"cat":            nil,
	"ls":             nil,
	"stat":           nil,
	"readlink":       nil,
	"pg_controldata": nil,
	"pg_ctl":         func(args []string) bool { return len(args) > 0 && args[0] == "status" },
	// pg_ctlcluster <version> <cluster> status, systemctl is-active [--quiet] <unit>:
	// the status commands of the service managers.
	"pg_ctlcluster": func(args []string) bool { return len(args) == 3 && args[2] == "status" },
	"systemctl": func(args []string) bool {
		switch {
		case len(args) >= 2 && args[0] == "is-active":
			return len(args) == 2 || len(args) == 3 && args[1] == "--quiet"
		case len(args) >= 2 && args[0] == "show":
			return true
		}
		return false
	},
	"postgres": func(args []string) bool { return len(args) == 1 && (args[0] == "--version" || args[0] == "-V") },
}

// readOnlyCommand reports whether cmd only reads: a script of a read-only
// primitive, or one simple command of readOnlyPrograms whose words are
// plain or quoted (no ; & | < > $ ` ( ) or globs, no newline).
func readOnlyCommand(cmd string) bool {
	if strings.HasPrefix(cmd, readOnlyMark) {
		return true
	}
	words, ok := shellWords(cmd)
	if !ok || len(words) == 0 {
		return false
	}
	check, known := readOnlyPrograms[path.Base(words[0])]
	return known && (check == nil || check(words[1:]))
}

// shellWords splits a command line the way sh does for the plain words
// ShellQuote makes: single quotes, and a backslash before one character,
// outside quotes. ok is false when the line holds anything else that sh
// would treat specially.
func shellWords(s string) ([]string, bool) {
	var words []string
	var w strings.Builder
	inWord := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ' ' || c == '\t':
			if inWord {
				words = append(words, w.String())
				w.Reset()
				inWord = false
			}
		case c == '\'':
			end := strings.IndexByte(s[i+1:], '\'')
			if end < 0 {
				return nil, false
			}
			w.WriteString(s[i+1 : i+1+end])
			i += end + 1
			inWord = true
		case c == '\\':
			if i+1 >= len(s) || s[i+1] == '\n' {
				return nil, false
			}
			w.WriteByte(s[i+1])
			i++
			inWord = true
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', strings.IndexByte("/._-+=:,@%", c) >= 0:
			w.WriteByte(c)
			inWord = true
		default:
			return nil, false
		}
	}
	if inWord {
		words = append(words, w.String())
	}
	return words, true
}
