package steps

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/pgsdr/sdr/cluster"
	"github.com/pgsdr/sdr/workflow"
)

// fakeNode is a DR node whose PostgreSQL a systemd unit runs, answering
// pg_ctl status, systemctl is-active and systemctl stop. It counts the
// stop commands it was sent.
type fakeNode struct {
	cluster.Access // nil: any other call panics
	node           *cluster.Node

	mu    sync.Mutex
	st    fakeState
	stops int
}

// fakeState is what runs on a fakeNode.
type fakeState struct {
	running    bool // a postmaster runs in the data directory
	unitActive bool
	stopFails  bool // systemctl stop exits 1
	stopIgnore bool // the server does not stop
}

func (f *fakeNode) Node() *cluster.Node { return f.node }
func (f *fakeNode) Close() error        { return nil }

func (f *fakeNode) Run(ctx context.Context, cmd string, opts cluster.RunOpts) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	exit := func(code int) error { return &cluster.CommandError{Node: f.node.Name, Cmd: cmd, ExitCode: code} }
	switch {
	case strings.Contains(cmd, "pg_ctl status -D"):
		if f.st.running {
			return nil, nil
		}
		return nil, exit(3)
	case strings.Contains(cmd, "systemctl is-active --quiet"):
		if f.st.unitActive {
			return nil, nil
		}
		return nil, exit(3)
	case strings.Contains(cmd, "systemctl stop"):
		f.stops++
		if !f.st.stopIgnore {
			f.st.running, f.st.unitActive = false, false
		}
		if f.st.stopFails {
			return nil, exit(1)
		}
		return nil, nil
	}
	return nil, exit(127)
}

func TestStopNodeThroughItsManager(t *testing.T) {
	cases := []struct {
		name      string
		st        fakeState
		wantStops int
		wantErr   string // "" for success
		permanent bool
	}{
		{"not running: nothing to do", fakeState{}, 0, "", false},
		{"running under its unit: stopped through systemd", fakeState{running: true, unitActive: true}, 1, "", false},
		{"started by hand beside an inactive unit: refused, not stopped", fakeState{running: true}, 0, "outside its service manager", true},
		{"the stop command fails but the server ends", fakeState{running: true, unitActive: true, stopFails: true}, 1, "", false},
		{"the server does not stop", fakeState{running: true, unitActive: true, stopIgnore: true}, 1, "still runs", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := &cluster.Config{Name: "pair1", Standby: cluster.ClusterSpec{Main: "dc2-a", Nodes: []cluster.Node{{
				Name: "dc2-a", Host: "::1", DataDir: "/var/lib/pgsql/16/data", BinDir: "/usr/pgsql-16/bin",
				Service: cluster.Service{Manager: cluster.ManagerSystemd, Unit: "postgresql-16", Systemctl: "sudo -n systemctl"}}}}}
			cfg.Timeouts.Command.Duration = time.Second
			n := &cfg.Standby.Nodes[0]
			fake := &fakeNode{node: n, st: tc.st}
			pool := cluster.OpenWith(cfg, nil, func(context.Context, *cluster.Config, *cluster.Node) (cluster.Access, error) { return fake, nil })
			defer pool.Close()
			e := &Env{Config: cfg, Pool: pool, Timeout: 300 * time.Millisecond}
			e.layouts.set("dc2-a", nodeLayout{DataDir: n.DataDir, Work: n.DataDir + ".sdr"})
			rc := &workflow.RunContext{Log: zap.NewNop()}
			err := e.stopNode(context.Background(), rc, n)
			if fake.stops != tc.wantStops {
				t.Errorf("%d stop commands, want %d", fake.stops, tc.wantStops)
			}
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("stopNode: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("stopNode = %v, want an error mentioning %q", err, tc.wantErr)
			case err != nil && workflow.IsPermanent(err) != tc.permanent:
				t.Errorf("permanent = %v, want %v (%v)", workflow.IsPermanent(err), tc.permanent, err)
			}
			// A second stop of a stopped node changes nothing.
			if err == nil {
				before := fake.stops
				if err := e.stopNode(context.Background(), rc, n); err != nil || fake.stops != before {
					t.Errorf("second stopNode: %v, %d more stop commands", err, fake.stops-before)
				}
			}
		})
	}
}
