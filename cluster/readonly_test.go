package cluster

import (
	"context"
	"errors"
	"io/fs"
	"net"
	"path/filepath"
	"testing"
)

func TestReadOnlyCommand(t *testing.T) {
	tests := []struct {
		name string
		cmd  string
		ok   bool
	}{
		{"test -e with a quoted path", "test -e " + ShellQuote("/srv/pg data/x"), true},
		{"a path with a quote in it", "test -e " + ShellQuote("/srv/it's"), true},
		{"df", "df -Pk /srv/pg", true},
		{"pg_ctl status", "'/usr/lib/postgresql/15/bin/pg_ctl' status -D /srv/pg", true},
		{"postgres --version", "/usr/lib/postgresql/15/bin/postgres --version", true},
		{"a read-only primitive's script", readOnlyMark + "rm -rf /x\n", true},
		{"pg_ctlcluster status", "pg_ctlcluster 15 main status", true},
		{"systemctl is-active", "systemctl is-active --quiet 'postgresql@15-main'", true},
		{"pg_ctlcluster stop", "pg_ctlcluster 15 main stop", false},
		{"systemctl stop", "systemctl stop postgresql@15-main", false},
		{"pg_ctl stop", "/usr/lib/postgresql/15/bin/pg_ctl stop -D /srv/pg -m fast", false},
		{"postgres as a server", "/usr/lib/postgresql/15/bin/postgres -D /srv/pg", false},
		{"rm", "rm -f /srv/pg.sdr/pgpass", false},
		{"mkdir and chmod", "mkdir -p /srv/pg.sdr && chmod 700 /srv/pg.sdr", false},
		{"a read chained with a write", "test -e /x; rm -rf /x", false},
		{"a pipe", "cat /x | sh", false},
		{"a redirect", "cat /x > /y", false},
		{"command substitution", "test -e $(rm -rf /x)", false},
		{"backquotes", "test -e `rm -rf /x`", false},
		{"a newline", "test -e /x\nrm -rf /x", false},
		{"an unterminated quote", "test -e '/x", false},
		{"a script of a primitive that writes", shFuncs + "sdr_empty /x\n", false},
		{"empty", "", false},
		{"a mark that is not at the start", "echo\n" + readOnlyMark, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := readOnlyCommand(tc.cmd); got != tc.ok {
				t.Fatalf("readOnlyCommand(%q) = %t, want %t", tc.cmd, got, tc.ok)
			}
		})
	}
}

// countingAccess counts what reaches the node.
type countingAccess struct {
	Access
	node                *Node
	runs, writes, start int
	ran                 []string
}

func (c *countingAccess) Run(_ context.Context, cmd string, _ RunOpts) ([]byte, error) {
	c.runs++
	c.ran = append(c.ran, cmd)
	return []byte("ok"), nil
}
func (c *countingAccess) WriteFile(context.Context, string, []byte, fs.FileMode) error {
	c.writes++
	return nil
}
func (c *countingAccess) Start(context.Context, string, RunOpts) (Proc, error) {
	c.start++
	return nil, nil
}
func (c *countingAccess) ReadFile(context.Context, string) ([]byte, error) {
	return []byte("content"), nil
}
func (c *countingAccess) Dial(context.Context, string, string) (net.Conn, error) {
	return nil, errors.New("no network in this test")
}
func (c *countingAccess) Node() *Node { return c.node }

func TestReadOnlyAccessRefusesChangesBeforeTheNode(t *testing.T) {
	inner := &countingAccess{node: &Node{Name: "dc2-a"}}
	a := ReadOnly(inner)
	if !IsReadOnly(a) || IsReadOnly(inner) || ReadOnly(a) != a {
		t.Fatal("IsReadOnly does not tell the wrapper from the access")
	}
	ctx := context.Background()
	if err := a.WriteFile(ctx, "/srv/pg/pg_hba.conf", []byte("x"), 0o600); !errors.Is(err, ErrReadOnly) {
		t.Errorf("WriteFile: %v", err)
	}
	if _, err := a.Start(ctx, "pg_basebackup -D /x", RunOpts{}); !errors.Is(err, ErrReadOnly) {
		t.Errorf("Start: %v", err)
	}
	if _, err := a.Run(ctx, "rm -rf /srv/pg", RunOpts{}); !errors.Is(err, ErrReadOnly) {
		t.Errorf("Run rm: %v", err)
	}
	if err := RemoveTree(ctx, a, "/srv/pg.sdr/old", "/srv/pg.sdr/trash"); !errors.Is(err, ErrReadOnly) {
		t.Errorf("RemoveTree: %v", err)
	}
	if err := RetireTrees(ctx, a, []Retire{{"/srv/pg.sdr/old", "/srv/pg.sdr/trash"}}); !errors.Is(err, ErrReadOnly) {
		t.Errorf("RetireTrees: %v", err)
	}
	if inner.runs+inner.writes+inner.start != 0 {
		t.Fatalf("changes reached the node: %d runs (%q), %d writes, %d starts", inner.runs, inner.ran, inner.writes, inner.start)
	}
	if _, err := a.Run(ctx, "test -e /srv/pg", RunOpts{}); err != nil {
		t.Errorf("a read was refused: %v", err)
	}
	if _, _, err := StatPaths(ctx, a, "/srv/pg"); err == nil || errors.Is(err, ErrReadOnly) {
		// The fake answers "ok", which the primitive cannot parse: what
		// matters is that the script reached the node.
		t.Errorf("StatPaths through the wrapper: %v", err)
	}
	if _, err := a.ReadFile(ctx, filepath.Join("/srv/pg", "pg_hba.conf")); err != nil {
		t.Errorf("ReadFile: %v", err)
	}
	if inner.runs != 2 {
		t.Fatalf("reads that reached the node: %d (%q), want 2", inner.runs, inner.ran)
	}
}
