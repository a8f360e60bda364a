package steps

import (
	"strings"
	"testing"

	"github.com/pgsdr/sdr/cluster"
	"github.com/pgsdr/sdr/workflow"
)

func TestDecideFailover(t *testing.T) {
	const sys = "7300000000000000001"
	down := func(n string) oldPrimaryObs {
		return oldPrimaryObs{Node: n, SSH: true, SystemID: sys, State: cluster.StateShutDownInRecovery}
	}
	unreachable := func(n string) oldPrimaryObs {
		return oldPrimaryObs{Node: n, SSHErr: "no route to host", PGErr: "timeout"}
	}
	lossy := lossWindow{ReceivedLSN: "0/5000000", ReplayedLSN: "0/5000000"}
	cases := []struct {
		name     string
		obs      []oldPrimaryObs
		w        lossWindow
		accepted bool
		wantErr  string // "" for allowed
	}{
		{"primary answers to the DR side", []oldPrimaryObs{{Node: "dc1-a", PGAnswered: true, PGPrimary: true}, down("dc1-b")}, lossy, true, "dc1-a (to the DR side's main standby) answers as a primary"},
		{"primary answers over SSH only (link problem)", []oldPrimaryObs{{Node: "dc1-a", SSH: true, PostmasterAlive: true, AdminAnswered: true, AdminPrimary: true}},
			lossy, true, "over SSH"},
		{"a standby of the old cluster answering is not a primary", []oldPrimaryObs{{Node: "dc1-b", PGAnswered: true}, unreachable("dc1-a")}, lossy, true, ""},
		{"unreachable without the flag", []oldPrimaryObs{unreachable("dc1-a"), unreachable("dc1-b")}, lossy, false, "cannot be reached (dc1-a, dc1-b)"},
		{"unreachable with the flag", []oldPrimaryObs{unreachable("dc1-a"), unreachable("dc1-b")}, lossy, true, ""},
		{"reachable and stopped but not proven lossless needs the flag", []oldPrimaryObs{down("dc1-a")}, lossy, false, "--accept-data-loss"},
		{"proven lossless needs no flag", []oldPrimaryObs{down("dc1-a")}, lossWindow{NoLoss: true, NoLossBecause: "clean"}, false, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := decideFailover(c.obs, c.w, c.accepted)
			if c.wantErr == "" {
				if err != nil {
					t.Fatalf("want allowed, got %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.wantErr) || !workflow.IsPermanent(err) {
				t.Fatalf("got %v, want a permanent refusal containing %q", err, c.wantErr)
			}
			if !strings.Contains(err.Error(), "Nothing was changed") {
				t.Errorf("the refusal should say nothing was changed: %v", err)
			}
		})
	}
	// The data-loss window is printed with the refusal.
	err := decideFailover([]oldPrimaryObs{unreachable("dc1-a")}, lossy, false)
	if err == nil || !strings.Contains(err.Error(), "0/5000000") {
		t.Errorf("refusal without the window: %v", err)
	}
}

func TestNoLossProof(t *testing.T) {
	const sys = "7300000000000000001"
	clean := oldPrimaryObs{Node: "dc1-a", SSH: true, SystemID: sys, State: cluster.StateShutDown, CheckpointLSN: 0x5000028}
	standby := oldPrimaryObs{Node: "dc1-b", SSH: true, SystemID: sys, State: cluster.StateShutDownInRecovery, CheckpointLSN: 0x4000000}
	cases := []struct {
		name     string
		obs      []oldPrimaryObs
		replayed cluster.LSN
		proven   bool
		whyNot   string // part of what stands in the way
	}{
		{"clean shutdown replayed past", []oldPrimaryObs{clean, standby}, 0x50000A0, true, ""},
		{"clean shutdown not yet replayed", []oldPrimaryObs{clean, standby}, 0x5000028, false, "not replayed past dc1-a's shutdown checkpoint"},
		{"a node not reached", []oldPrimaryObs{clean, {Node: "dc1-b"}}, 0x50000A0, false, "dc1-b was not reached"},
		{"crashed primary (in production)", []oldPrimaryObs{{Node: "dc1-a", SSH: true, SystemID: sys, State: cluster.StateInProduction, CheckpointLSN: 0x1}}, 0x50000A0, false, "dc1-a's pg_control says"},
		{"still running", []oldPrimaryObs{{Node: "dc1-a", SSH: true, PostmasterAlive: true, SystemID: sys, State: cluster.StateShutDown, CheckpointLSN: 1}}, 0x50000A0, false, "dc1-a still runs"},
		{"its standby still running", []oldPrimaryObs{clean, {Node: "dc1-b", SSH: true, PostmasterAlive: true, SystemID: sys, State: cluster.StateShutDownInRecovery}}, 0x50000A0, false, "dc1-b still runs"},
		{"another system", []oldPrimaryObs{{Node: "dc1-a", SSH: true, SystemID: "9", State: cluster.StateShutDown, CheckpointLSN: 1}}, 0x50000A0, false, "dc1-a's pg_control"},
		{"no former primary at all", []oldPrimaryObs{standby}, 0x50000A0, false, "no node of it shut down cleanly"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			proof, whyNot := noLossProofWhy(c.obs, sys, c.replayed)
			if got := proof != ""; got != c.proven || !strings.Contains(whyNot, c.whyNot) || (c.proven != (whyNot == "")) {
				t.Fatalf("proven = %v (%q), want %v; why not %q, want it to say %q", got, proof, c.proven, whyNot, c.whyNot)
			}
		})
	}
}

func TestDecideFence(t *testing.T) {
	cases := []struct {
		name string
		o    oldPrimaryObs
		want fenceAction
	}{
		{"not reachable", oldPrimaryObs{}, fenceUnreach},
		{"running (frozen or not answering)", oldPrimaryObs{SSH: true, PostmasterAlive: true}, fenceStop},
		{"running and already marked", oldPrimaryObs{SSH: true, PostmasterAlive: true, Fenced: true}, fenceStop},
		{"down, not marked", oldPrimaryObs{SSH: true}, fenceMark},
		{"down and marked", oldPrimaryObs{SSH: true, Fenced: true}, fenceNone},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := decideFence(c.o); got != c.want {
				t.Fatalf("got %s, want %s", got, c.want)
			}
		})
	}
}

func TestParseHistory(t *testing.T) {
	parent, sp, err := parseHistory("1\t0/5000A0\tno recovery target specified\n\n2\t0/7001238\tno recovery target specified\n", 3)
	if err != nil || parent != 2 || sp != "0/7001238" {
		t.Fatalf("got %d %s %v", parent, sp, err)
	}
	for _, bad := range []string{"", "# only a comment\n", "1\n", "x\t0/1\tr\n", "1\tnot-an-lsn\tr\n"} {
		if _, _, err := parseHistory(bad, 2); err == nil {
			t.Errorf("parseHistory(%q) accepted", bad)
		}
	}
}

func TestPromotedAlready(t *testing.T) {
	cases := []struct {
		name       string
		inRecovery bool
		sys        string
		tli        int
		iSys       string
		iTLI       int
		done       bool
		wantErr    bool
	}{
		{"still a standby: promote", true, "s", 1, "s", 1, false, false},
		{"promoted by this failover before a kill", false, "s", 2, "s", 1, true, false},
		{"out of recovery but no intent recorded: someone else", false, "s", 2, "", 0, false, true},
		{"out of recovery on the same timeline", false, "s", 1, "s", 1, false, true},
		{"another system", false, "x", 2, "s", 1, false, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			done, err := promotedAlready("dc2-a", c.inRecovery, c.sys, c.tli, c.iSys, c.iTLI)
			if done != c.done || (err != nil) != c.wantErr {
				t.Fatalf("got %v %v", done, err)
			}
		})
	}
}

func TestParseForks(t *testing.T) {
	got, err := parseForks("1\t0/5000A0\tno recovery target specified\n\n2\t0/7001238\tx\n")
	if err != nil || len(got) != 2 || got[1] != 0x5000A0 || got[2] != 0x7001238 {
		t.Fatalf("got %v %v", got, err)
	}
	for _, bad := range []string{"x 0/1\n", "1\n", "1\t0-1\tx\n"} {
		if _, err := parseForks(bad); err == nil {
			t.Errorf("%q was accepted", bad)
		}
	}
}

func TestStaleNote(t *testing.T) {
	two, one := 2, 1
	primaryOn2 := []NodeStatus{{Name: "dc2-a", Cluster: "standby", Reachable: true, Role: "primary", Timeline: &two}}
	cases := []struct {
		name     string
		state    workflow.State
		recorded string
		nodes    []NodeStatus
		stale    bool
	}{
		{"archive, a primary on a later timeline elsewhere", workflow.StateArchive, "1", primaryOn2, true},
		{"archive, the primary on the recorded timeline", workflow.StateArchive, "1",
			[]NodeStatus{{Name: "dc1-a", Reachable: true, Role: "primary", Timeline: &one}}, false},
		{"archive, nothing reachable", workflow.StateArchive, "1", []NodeStatus{{Name: "dc2-a"}}, false},
		{"not archive", workflow.StateRecovery, "1", primaryOn2, false},
		{"no epoch recorded (an older sdr)", workflow.StateArchive, "", primaryOn2, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := StaleNote(c.state, c.recorded, c.nodes)
			if (got != "") != c.stale || (c.stale && !strings.Contains(got, "dc2-a")) {
				t.Fatalf("got %q", got)
			}
		})
	}
}

func TestMergeOldPrimaryObs(t *testing.T) {
	sshUp := oldPrimaryObs{SSH: true, PostmasterAlive: true, AdminAnswered: true, AdminPrimary: true, State: "in production", SystemID: "7"}
	tests := []struct {
		name    string
		dr, ssh oldPrimaryObs
		want    oldPrimaryObs
		primary bool
	}{
		{name: "answers as a primary to the main standby only",
			dr: oldPrimaryObs{PGAnswered: true, PGPrimary: true}, ssh: oldPrimaryObs{SSHErr: "i/o timeout"},
			want: oldPrimaryObs{Node: "dc1-a", PGAnswered: true, PGPrimary: true, SSHErr: "i/o timeout"}, primary: true},
		{name: "answers as a primary over SSH only",
			dr: oldPrimaryObs{PGErr: "connection refused"}, ssh: sshUp,
			want: oldPrimaryObs{Node: "dc1-a", PGErr: "connection refused", SSH: true, PostmasterAlive: true, AdminAnswered: true, AdminPrimary: true,
				State: "in production", SystemID: "7"}, primary: true},
		{name: "the main standby's error wins over the socket's",
			dr: oldPrimaryObs{PGErr: "timeout via the main standby"}, ssh: oldPrimaryObs{SSH: true, PostmasterAlive: true, PGErr: "socket: timeout"},
			want: oldPrimaryObs{Node: "dc1-a", PGErr: "timeout via the main standby", SSH: true, PostmasterAlive: true}},
		{name: "the socket's error when the main standby's path failed without one",
			dr: oldPrimaryObs{}, ssh: oldPrimaryObs{SSH: true, PostmasterAlive: true, PGErr: "socket: timeout"},
			want: oldPrimaryObs{Node: "dc1-a", PGErr: "socket: timeout", SSH: true, PostmasterAlive: true}},
		{name: "nothing answers",
			dr: oldPrimaryObs{PGErr: "timeout"}, ssh: oldPrimaryObs{SSHErr: "timeout"},
			want: oldPrimaryObs{Node: "dc1-a", PGErr: "timeout", SSHErr: "timeout"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := mergeOldPrimaryObs("dc1-a", tc.dr, tc.ssh)
			if got != tc.want {
				t.Errorf("got %+v\nwant %+v", got, tc.want)
			}
			if got.answersAsPrimary() != tc.primary {
				t.Errorf("answersAsPrimary() = %v, want %v", got.answersAsPrimary(), tc.primary)
			}
		})
	}
}

func TestCascadeNotWaited(t *testing.T) {
	for _, tc := range []struct {
		reachable, running bool
		want               string
	}{
		{true, true, ""},
		{true, false, "does not run"},
		{false, false, "cannot be reached over SSH"},
	} {
		if got := cascadeNotWaited(tc.reachable, tc.running); got != tc.want {
			t.Errorf("cascadeNotWaited(%v, %v) = %q, want %q", tc.reachable, tc.running, got, tc.want)
		}
	}
}
