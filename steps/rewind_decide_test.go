package steps

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/pgsdr/sdr/cluster"
	"github.com/pgsdr/sdr/workflow"
)

func TestDecideRejoin(t *testing.T) {
	// A former primary that pg_rewind can take: killed (in production),
	// wal_log_hints on, everything else in place.
	ok := rejoinObs{Node: "dc1-a", Kind: DirFormerPrimary, IsMain: true, VersionNum: 150018,
		Control:    cluster.ControlData{State: cluster.StateInProduction, TimeLineID: 1, WalLogHints: true},
		SocketPath: "/pg/data.sdr/rewind/.s.PGSQL.5432", ForkKnown: true, WALFromFork: true}
	with := func(f func(*rejoinObs)) rejoinObs { o := ok; f(&o); return o }
	cases := []struct {
		name   string
		o      rejoinObs
		want   rejoinMethod
		reason string // what the reason must say ("" : no reason)
	}{
		{"former primary with wal_log_hints: rewound", ok, rejoinRewind, "rewound with pg_rewind"},
		{"former primary with data checksums: rewound", with(func(o *rejoinObs) { o.Control.WalLogHints, o.Control.DataChecksums = false, 1 }), rejoinRewind, "data checksums on"},
		{"neither hints nor checksums: copied", with(func(o *rejoinObs) { o.Control.WalLogHints = false }), rejoinCopy, "wal_log_hints off and no data checksums"},
		{"--no-rewind: copied", with(func(o *rejoinObs) { o.NoRewind = true }), rejoinCopy, "--no-rewind"},
		{"a cascade: copied from the main standby", with(func(o *rejoinObs) { o.IsMain = false }), rejoinCopy, "only the main standby"},
		{"PostgreSQL 12: copied", with(func(o *rejoinObs) { o.VersionNum = 120015 }), rejoinCopy, "PostgreSQL 12"},
		{"PostgreSQL 14, config outside, crashed: copied", with(func(o *rejoinObs) { o.VersionNum, o.SeparateConfig = 140010, true }), rejoinCopy, "--config-file"},
		{"PostgreSQL 14, config outside, shut down cleanly: rewound", with(func(o *rejoinObs) {
			o.VersionNum, o.SeparateConfig, o.Control.State = 140010, true, cluster.StateShutDown
		}), rejoinRewind, ""},
		{"PostgreSQL 15, config outside, crashed: rewound", with(func(o *rejoinObs) { o.SeparateConfig = true }), rejoinRewind, ""},
		{"tablespaces: copied", with(func(o *rejoinObs) { o.Tablespaces = 1 }), rejoinCopy, "tablespaces"},
		{"socket path too long: copied", with(func(o *rejoinObs) { o.SocketPath = "/" + strings.Repeat("x", cluster.MaxSocketPath) }), rejoinCopy, "longer than a Unix socket path"},
		{"fork unknown: copied", with(func(o *rejoinObs) { o.ForkKnown = false }), rejoinCopy, "timeline history"},
		{"WAL from the fork incomplete: copied", with(func(o *rejoinObs) { o.WALFromFork = false }), rejoinCopy, "no longer holds all of its WAL"},
		{"primary not reachable for pg_rewind: copied", with(func(o *rejoinObs) { o.SourceProblem = "no SSH" }), rejoinCopy, "no SSH"},
		{"a former standby: plain copy", with(func(o *rejoinObs) { o.Kind = DirFormerStandby }), rejoinCopy, ""},
		{"an sdr copy: plain copy", with(func(o *rejoinObs) { o.Kind = DirSdrCopy }), rejoinCopy, ""},
		{"recorded copy stays a copy", with(func(o *rejoinObs) { o.Recorded = rejoinCopy }), rejoinCopy, ""},
		{"recorded copy-keep stays", with(func(o *rejoinObs) { o.Recorded = rejoinCopyKeep }), rejoinCopyKeep, ""},
		{"pg_rewind cut short: copy, keeping the directory", with(func(o *rejoinObs) { o.Recorded, o.Phase = rejoinRewind, phaseRewinding }), rejoinCopyKeep, "did not finish"},
		{"pg_rewind cut short, even with --no-rewind", with(func(o *rejoinObs) {
			o.Recorded, o.Phase, o.NoRewind = rejoinRewind, phaseRewinding, true
		}), rejoinCopyKeep, "did not finish"},
		{"rewound: the rewind goes on whatever the directory looks like", with(func(o *rejoinObs) {
			o.Recorded, o.Phase, o.Kind, o.NoRewind = rejoinRewind, phaseRewound, DirFormerStandby, true
		}), rejoinRewind, ""},
		{"configured: the rewind goes on", with(func(o *rejoinObs) { o.Recorded, o.Phase, o.Kind = rejoinRewind, phaseConfigured, DirSdrCopy }), rejoinRewind, ""},
		{"started: the rewind goes on", with(func(o *rejoinObs) { o.Recorded, o.Phase, o.Kind = rejoinRewind, phaseStarted, DirSdrCopy }), rejoinRewind, ""},
		{"kept: the rewind resumes", with(func(o *rejoinObs) { o.Recorded, o.Phase = rejoinRewind, phaseKept }), rejoinRewind, "resumes"},
		{"kept, then --no-rewind: nothing changed yet, copied", with(func(o *rejoinObs) { o.Recorded, o.Phase, o.NoRewind = rejoinRewind, phaseKept, true }), rejoinCopy, "--no-rewind"},
		{"saved, primary now unreachable: copied", with(func(o *rejoinObs) { o.Recorded, o.Phase, o.SourceProblem = rejoinRewind, phaseSaved, "gone" }), rejoinCopy, "gone"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, reason := decideRejoin(tc.o)
			if got != tc.want {
				t.Fatalf("got %s (%s), want %s", got, reason, tc.want)
			}
			if tc.reason == "" && tc.want == rejoinCopy && reason != "" {
				t.Errorf("a plain copy gives a reason: %s", reason)
			}
			if tc.reason != "" && !strings.Contains(reason, tc.reason) {
				t.Errorf("reason %q does not say %q", reason, tc.reason)
			}
			if reason != "" && !strings.Contains(reason, "dc1-a") {
				t.Errorf("reason %q does not name the node", reason)
			}
		})
	}
}

func TestPlanRewind(t *testing.T) {
	base := rewindObs{Node: "dc1-a", Kind: DirFormerPrimary, SameSys: true, CopyID: "run1/dc1-a"}
	with := func(f func(*rewindObs)) rewindObs { o := base; f(&o); return o }
	cases := []struct {
		name      string
		o         rewindObs
		want      rewindAction
		err       bool
		permanent bool
	}{
		{"nothing done yet: save first", with(func(o *rewindObs) { o.CopyID = "" }), rwSave, false, false},
		{"saved: keep", with(func(o *rewindObs) { o.Phase = phaseSaved }), rwKeep, false, false},
		{"kept and the kept directory is there: rewind", with(func(o *rewindObs) { o.Phase, o.KeptDone = phaseKept, true }), rwRewind, false, false},
		{"kept but the kept directory is gone: keep again", with(func(o *rewindObs) { o.Phase = phaseKept }), rwKeep, false, false},
		{"rewound: configure", with(func(o *rewindObs) { o.Phase, o.Kind = phaseRewound, DirFormerStandby }), rwConfigure, false, false},
		{"rewound, classified unknown: configure all the same", with(func(o *rewindObs) { o.Phase, o.Kind = phaseRewound, DirUnknown }), rwConfigure, false, false},
		{"rewound, another system now: refused", with(func(o *rewindObs) { o.Phase, o.SameSys = phaseRewound, false }), "", true, true},
		{"rewound but started by someone: retry later", with(func(o *rewindObs) { o.Phase, o.Running, o.InRecov = phaseRewound, true, true }), "", true, false},
		{"configured, ours, stopped: start", with(func(o *rewindObs) { o.Phase, o.DataCopy, o.Kind = phaseConfigured, "run1/dc1-a", DirSdrCopy }), rwStart, false, false},
		{"configured, ours, running as a standby: done", with(func(o *rewindObs) {
			o.Phase, o.DataCopy, o.Running, o.InRecov = phaseConfigured, "run1/dc1-a", true, true
		}), rwDone, false, false},
		{"started, ours, running: done", with(func(o *rewindObs) { o.Phase, o.DataCopy, o.Running, o.InRecov = phaseStarted, "run1/dc1-a", true, true }), rwDone, false, false},
		{"configured, another marker: refused", with(func(o *rewindObs) { o.Phase, o.DataCopy = phaseConfigured, "other" }), "", true, true},
		{"running as a primary: refused", with(func(o *rewindObs) { o.Running = true }), "", true, true},
		{"running as a standby before the rewind: retry later", with(func(o *rewindObs) { o.Phase, o.Running, o.InRecov = phaseSaved, true, true }), "", true, false},
		{"kept, but no longer a former primary: refused", with(func(o *rewindObs) { o.Phase, o.Kind = phaseKept, DirOtherCluster }), "", true, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := planRewind(tc.o)
			if (err != nil) != tc.err {
				t.Fatalf("got %s, %v", got, err)
			}
			if err != nil {
				var p *workflow.Permanent
				if errors.As(err, &p) != tc.permanent {
					t.Errorf("permanent = %v, want %v: %v", !tc.permanent, tc.permanent, err)
				}
				if !strings.Contains(err.Error(), "dc1-a") {
					t.Errorf("%v does not name the node", err)
				}
				return
			}
			if got != tc.want {
				t.Fatalf("got %s, want %s", got, tc.want)
			}
		})
	}
}

func TestWALSegName(t *testing.T) {
	cases := []struct {
		name    string
		tli     int
		lsn     cluster.LSN
		segSize uint64
		want    string
	}{
		{"first segment", 1, 0x1000000, 16 << 20, "000000010000000000000001"},
		{"inside a segment", 2, 0x7001238, 16 << 20, "000000020000000000000007"},
		{"past 4 GiB", 1, 0x1_FF000000, 16 << 20, "0000000100000001000000FF"},
		{"1 GiB segments", 3, 0x1_40000000, 1 << 30, "000000030000000100000001"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := walSegName(tc.tli, tc.lsn, tc.segSize)
			if got != tc.want {
				t.Fatalf("got %s, want %s", got, tc.want)
			}
			tli, seg, ok := walSegNo(got, tc.segSize)
			if !ok || tli != tc.tli || seg != uint64(tc.lsn)/tc.segSize {
				t.Fatalf("walSegNo(%s) = %d %d %v", got, tli, seg, ok)
			}
		})
	}
}

func TestWALToKeep(t *testing.T) {
	const seg = 16 << 20
	fork := cluster.LSN(0x5000A0 + 4*seg) // in segment 4
	cases := []struct {
		name     string
		names    []string
		keep     []string
		complete bool
	}{
		{"from the fork segment on, with history files",
			[]string{"000000010000000000000003", "000000010000000000000004", "000000010000000000000005", "00000002.history", "archive_status"},
			[]string{"000000010000000000000004", "000000010000000000000005", "00000002.history"}, true},
		{"the fork segment is gone",
			[]string{"000000010000000000000005", "000000010000000000000006"},
			[]string{"000000010000000000000005", "000000010000000000000006"}, false},
		{"a gap after the fork",
			[]string{"000000010000000000000004", "000000010000000000000006"},
			[]string{"000000010000000000000004", "000000010000000000000006"}, false},
		{"other timelines and partial files are not kept",
			[]string{"000000010000000000000004", "000000020000000000000004", "000000020000000000000004.partial", "000000010000000000000004.00000028.backup"},
			[]string{"000000010000000000000004"}, true},
		{"nothing at all", nil, nil, false},
		{"far past the fork, across a log id", []string{"0000000100000000000000FF", "000000010000000100000000"},
			[]string{"0000000100000000000000FF", "000000010000000100000000"}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			keep, complete := walToKeep(tc.names, 1, fork, seg)
			if !slices.Equal(keep, tc.keep) {
				t.Errorf("keep = %v, want %v", keep, tc.keep)
			}
			if complete != tc.complete {
				t.Errorf("complete = %v, want %v", complete, tc.complete)
			}
		})
	}
	t.Run("across a log id, from its last segment", func(t *testing.T) {
		keep, complete := walToKeep([]string{"0000000100000000000000FF", "000000010000000100000000"}, 1, 0xFF000010, seg)
		if !complete || len(keep) != 2 {
			t.Fatalf("got %v %v", keep, complete)
		}
	})
}

func TestRewindConninfo(t *testing.T) {
	got := rewindConninfo("/pg/my data.sdr/rewind", 5433, "postgres", "postgres")
	for _, want := range []string{`host='/pg/my data.sdr/rewind'`, "port=5433", "user=postgres", "dbname=postgres"} {
		if !strings.Contains(got, want) {
			t.Errorf("%q lacks %s", got, want)
		}
	}
	if strings.Contains(got, "password") {
		t.Errorf("%q carries a password", got)
	}
}
