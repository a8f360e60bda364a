package steps

import (
	"errors"
	"strings"
	"testing"
)

// TestDeadServer: the stream wait ends only when pg_ctl status says, by
// itself, that no server runs; a server starting up or a node that cannot
// be reached is waited for.
func TestDeadServer(t *testing.T) {
	refused := errors.New("connecting to /run/dc2-b/.s.PGSQL.5433: connection refused")
	starting := errors.New("FATAL: the database system is starting up (SQLSTATE 57P03)")
	noSSH := errors.New("on dc2-b: dial tcp 10.0.0.2:22: i/o timeout")
	tests := []struct {
		name      string
		askErr    error
		running   bool
		statusErr error
		wantEnd   bool
	}{
		{"the server stopped", refused, false, nil, true},
		{"the server starts up", starting, true, nil, false},
		{"the node cannot be reached", noSSH, false, noSSH, false},
		{"the session worked", nil, false, nil, false},
		{"running, but the session failed", refused, true, nil, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := deadServer("dc2-b", "/pg/dc2-b", "/pg/dc2-b.log on it", tc.askErr, tc.running, tc.statusErr)
			if (err != nil) != tc.wantEnd {
				t.Fatalf("ends the wait: %v, want %v (%v)", err != nil, tc.wantEnd, err)
			}
			if err == nil {
				return
			}
			for _, w := range []string{"dc2-b", "/pg/dc2-b", "/pg/dc2-b.log", "rerun"} {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not name %q: %v", w, err)
				}
			}
			if !errors.Is(err, tc.askErr) {
				t.Errorf("error does not wrap the session's: %v", err)
			}
		})
	}
}
