package steps

import (
	"strings"
	"testing"

	"github.com/pgsdr/sdr/cluster"
	"github.com/pgsdr/sdr/workflow"
)

const swSys = "7300000000000000001"

func swToken() switchToken {
	return switchToken{Pair: "p", Node: "dc1-a", SystemID: swSys, TimeLineID: 1, CheckpointLSN: "0/5000028", RedoLSN: "0/5000028", RedoWALFile: "000000010000000000000005"}
}

func TestTokenRoundTripAndFromControl(t *testing.T) {
	tok := swToken()
	got, err := decodeToken(tok.Encode())
	if err != nil || got != tok {
		t.Fatalf("round trip: %+v %v", got, err)
	}
	for _, bad := range []string{"", "!!", "e30"} { // e30 = {}
		if _, err := decodeToken(bad); err == nil {
			t.Errorf("decodeToken(%q) accepted", bad)
		}
	}
	cd := cluster.ControlData{SystemID: swSys, State: cluster.StateShutDown, CheckpointLSN: 0x5000028, RedoLSN: 0x5000028, TimeLineID: 1}
	if tk, err := tokenFromControl("p", "dc1-a", cd); err != nil || tk.CheckpointLSN != "0/5000028" {
		t.Fatalf("clean shutdown: %+v %v", tk, err)
	}
	for name, mut := range map[string]func(c *cluster.ControlData){
		"crashed (in production)": func(c *cluster.ControlData) { c.State = cluster.StateInProduction },
		"a standby's shutdown":    func(c *cluster.ControlData) { c.State = cluster.StateShutDownInRecovery },
		"online checkpoint last":  func(c *cluster.ControlData) { c.RedoLSN = 0x4000000 },
	} {
		c := cd
		mut(&c)
		if _, err := tokenFromControl("p", "dc1-a", c); err == nil || !workflow.IsPermanent(err) {
			t.Errorf("%s: want a permanent refusal, got %v", name, err)
		}
	}
}

func TestCheckDemoteLag(t *testing.T) {
	if err := checkDemoteLag("dc2-a", true, 100, 1000); err != nil {
		t.Errorf("caught up: %v", err)
	}
	if err := checkDemoteLag("dc2-a", true, 2000, 1000); err == nil || !strings.Contains(err.Error(), "2000") {
		t.Errorf("behind: %v", err)
	}
	if err := checkDemoteLag("dc2-a", false, 0, 1000); err == nil {
		t.Error("not streaming accepted")
	}
}

func TestShutdownReplayed(t *testing.T) {
	proven := replayObs{Receiver: "waiting", ReceivedLSN: 0x50000A0, ReplayedLSN: 0x50000A0, ReplayTLI: 1,
		Control: cluster.ControlData{CheckpointLSN: 0x5000028, RedoLSN: 0x5000028, TimeLineID: 1}}
	cases := []struct {
		name string
		mut  func(o *replayObs)
		ok   bool
	}{
		{"proven", func(o *replayObs) {}, true},
		{"no walreceiver at all", func(o *replayObs) { o.Receiver = "" }, true},
		{"still streaming", func(o *replayObs) { o.Receiver = "streaming" }, false},
		{"received but not replayed", func(o *replayObs) { o.ReceivedLSN = 0x5001000 }, false},
		{"last checkpoint is an online one", func(o *replayObs) { o.Control.RedoLSN = 0x4000000 }, false},
		{"replay went on past the checkpoint", func(o *replayObs) { o.ReplayedLSN, o.ReceivedLSN = 0x5100000, 0x5100000 }, false},
		{"replay before the checkpoint's end", func(o *replayObs) { o.ReplayedLSN, o.ReceivedLSN = 0x5000028, 0x5000028 }, false},
		{"checkpoint of another timeline", func(o *replayObs) { o.ReplayTLI = 2 }, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o := proven
			c.mut(&o)
			if got := shutdownReplayed(o) == ""; got != c.ok {
				t.Fatalf("proven = %v, want %v (%s)", got, c.ok, shutdownReplayed(o))
			}
		})
	}
}

func TestValidateToken(t *testing.T) {
	tok := swToken()
	at := replayObs{SystemID: swSys, ReplayTLI: 1, Control: cluster.ControlData{RedoLSN: 0x5000028}}
	cases := []struct {
		name      string
		mut       func(o *replayObs)
		ready     bool
		permanent bool
	}{
		{"replayed exactly through the token", func(o *replayObs) {}, true, false},
		{"not there yet", func(o *replayObs) { o.Control.RedoLSN = 0x4000000 }, false, false},
		{"stale token: replayed past it", func(o *replayObs) { o.Control.RedoLSN = 0x6000000 }, false, true},
		{"wrong system", func(o *replayObs) { o.SystemID = "9" }, false, true},
		{"token of a later timeline: retry", func(o *replayObs) { o.ReplayTLI = 0 }, false, false},
		{"standby already on a later timeline: stale", func(o *replayObs) { o.ReplayTLI = 2 }, false, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o := at
			c.mut(&o)
			ready, err := validateToken(tok, o)
			if ready != c.ready || (err != nil) != c.permanent || (err != nil && !workflow.IsPermanent(err)) {
				t.Fatalf("ready %v err %v", ready, err)
			}
		})
	}
}

func TestRejoinReady(t *testing.T) {
	tok := swToken()
	cases := []struct {
		name    string
		tli     int
		history string
		ready   bool
		wantErr bool
	}{
		{"not promoted yet", 1, "", false, false},
		{"promoted after the shutdown checkpoint", 2, "1\t0/50000A0\tno recovery target specified\n", true, false},
		{"promoted before it: the old primary wrote past the fork", 2, "1\t0/4000000\tx\n", false, true},
		{"promoted exactly at its start", 2, "1\t0/5000028\tx\n", false, true},
		{"a later timeline through 2", 3, "1\t0/50000A0\tx\n2\t0/7000000\tx\n", true, false},
		{"unrelated history", 2, "5\t0/1\tx\n", false, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ready, err := rejoinReady(tok, c.tli, c.history)
			if ready != c.ready || (err != nil) != c.wantErr {
				t.Fatalf("ready %v err %v", ready, err)
			}
		})
	}
}

func TestAbortAllowed(t *testing.T) {
	tok := swToken()
	if err := abortAllowed(tok, true, "", true, 1); err != nil {
		t.Errorf("not promoted: %v", err)
	}
	for name, c := range map[string]struct {
		reached, inRecovery bool
		tli                 int
		says                string
	}{
		"unreachable":                {false, false, 0, "cannot prove"},
		"promoted":                   {true, false, 2, "promoted"},
		"in recovery on a later tli": {true, true, 2, "timeline 2"},
	} {
		if err := abortAllowed(tok, c.reached, "refused", c.inRecovery, c.tli); err == nil || !strings.Contains(err.Error(), c.says) {
			t.Errorf("%s: %v", name, err)
		}
	}
}
