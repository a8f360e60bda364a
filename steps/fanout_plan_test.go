package steps

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/pgsdr/sdr/cluster"
)

func TestUseFanOut(t *testing.T) {
	cases := []struct {
		name        string
		on          bool
		cascades    int
		tablespaces int
		want        bool
		why         string // a word the reason must hold ("" for none)
	}{
		{"off", false, 2, 0, false, ""},
		{"on, one cascade", true, 1, 0, true, ""},
		{"on, no cascade", true, 0, 0, false, "no cascade"},
		{"on, tablespaces", true, 2, 1, false, "tablespace"},
		{"off, tablespaces: nothing to say", false, 2, 3, false, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, why := useFanOut(tc.on, tc.cascades, tc.tablespaces)
			if got != tc.want || (tc.why == "") != (why == "") || !strings.Contains(why, tc.why) {
				t.Fatalf("useFanOut = %v %q, want %v and a reason with %q", got, why, tc.want, tc.why)
			}
		})
	}
}

func TestFanOutRecordRoundTrip(t *testing.T) {
	r := fanOutRecord{Main: "run1/dc2-a", Copy: "run1/dc2-b", StartLSN: 0x1_0500_0028}
	got, ok := parseFanOutRecord(r.String())
	if !ok || got != r {
		t.Fatalf("parse(%q) = %+v %v", r.String(), got, ok)
	}
	for _, bad := range []string{"", "main=a copy=b", "main=a copy=b start_lsn=zz", "copy=b start_lsn=0/1", "main=a start_lsn=0/1"} {
		if _, ok := parseFanOutRecord(bad); ok {
			t.Errorf("parse(%q) accepted", bad)
		}
	}
}

func TestPlanFanOutCascade(t *testing.T) {
	rec := fanOutRecord{Main: "r1/dc2-a", Copy: "r1/dc2-b", StartLSN: 0x5000028}
	obs := buildObs{Node: "dc2-b", CopyID: "r1/dc2-b"}
	cases := []struct {
		name       string
		mainAction buildAction
		mainCopy   string
		recOK      bool
		rec        fanOutRecord
		obs        buildObs
		action     buildAction
		want       cascadePath
	}{
		{"main standby copies: every cascade joins", actCopy, "r2/dc2-a", true, rec, obs, actDone, pathJoin},
		{"main standby copies, cascade has nothing yet", actCopy, "r2/dc2-a", false, fanOutRecord{}, buildObs{Node: "dc2-b"}, actCopy, pathJoin},
		{"copied by the fan-out: configure it", actConfigure, "r1/dc2-a", true, rec, obs, actConfigure, pathResume},
		{"configured: swap it", actStart, "r1/dc2-a", true, rec, obs, actSwap, pathResume},
		{"main standby done, cascade configured", actDone, "r1/dc2-a", true, rec, obs, actSwap, pathResume},
		{"copy not complete on the cascade, stream gone", actConfigure, "r1/dc2-a", true, rec, obs, actCopy, pathOrdinary},
		{"record of another copy of the cascade", actSwap, "r1/dc2-a", true, rec, buildObs{Node: "dc2-b", CopyID: "r0/dc2-b"}, actConfigure, pathOrdinary},
		{"record of another main standby copy", actSwap, "r3/dc2-a", true, rec, obs, actConfigure, pathOrdinary},
		{"no record: an ordinary copy in progress", actDone, "r1/dc2-a", false, fanOutRecord{}, obs, actConfigure, pathOrdinary},
		{"already swapped: the ordinary path starts it", actDone, "r1/dc2-a", true, rec, obs, actStart, pathOrdinary},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := planFanOutCascade(tc.mainAction, tc.mainCopy, tc.rec, tc.recOK, tc.obs, tc.action); got != tc.want {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func lsnp(l cluster.LSN) *cluster.LSN { return &l }

func TestDecideCascadeReady(t *testing.T) {
	rec := fanOutRecord{Main: "r1/dc2-a", Copy: "r1/dc2-b", StartLSN: 0x5000028}
	ready := cascadeReadyObs{Node: "dc2-b", Rec: rec, MainNode: "dc2-a", MainDataCopy: "r1/dc2-a", Slot: "sdr_p_dc2b",
		SlotExists: true, RestartLSN: lsnp(0x5000028), WalStatus: "reserved"}
	cases := []struct {
		name string
		edit func(o *cascadeReadyObs)
		ok   bool
		why  string
	}{
		{"slot reserves from the backup's start", func(o *cascadeReadyObs) {}, true, ""},
		{"slot reserves from before it", func(o *cascadeReadyObs) { o.RestartLSN = lsnp(0x4000000) }, true, ""},
		{"a restartpoint came first", func(o *cascadeReadyObs) { o.RestartLSN = lsnp(0x7000060) }, false, "restartpoint"},
		{"main standby holds another copy", func(o *cascadeReadyObs) { o.MainDataCopy = "r2/dc2-a" }, false, "holds copy"},
		{"no slot", func(o *cascadeReadyObs) { o.SlotExists, o.RestartLSN = false, nil }, false, "does not exist"},
		{"slot without WAL", func(o *cascadeReadyObs) { o.RestartLSN = nil }, false, "reserves no WAL"},
		{"slot lost WAL", func(o *cascadeReadyObs) { o.WalStatus = "lost" }, false, "lost"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o := ready
			tc.edit(&o)
			ok, why := decideCascadeReady(o)
			if ok != tc.ok || !strings.Contains(why, tc.why) {
				t.Fatalf("got %v %q, want %v with %q", ok, why, tc.ok, tc.why)
			}
		})
	}
}

func TestCheckPrimarySlotKeeps(t *testing.T) {
	const start = cluster.LSN(0x5000028)
	cases := []struct {
		name    string
		o       primarySlotObs
		wantErr bool
	}{
		{"reserved from before the copy", primarySlotObs{Exists: true, RestartLSN: lsnp(0x3000000), WalStatus: "reserved"}, false},
		{"reserved from the copy's start", primarySlotObs{Exists: true, RestartLSN: lsnp(start), WalStatus: "extended"}, false},
		{"advanced past the start by someone else", primarySlotObs{Exists: true, RestartLSN: lsnp(0x6000000), WalStatus: "reserved"}, true},
		{"lost", primarySlotObs{Exists: true, RestartLSN: lsnp(0x3000000), WalStatus: "lost"}, true},
		{"no WAL reserved", primarySlotObs{Exists: true}, true},
		{"gone", primarySlotObs{}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if err := checkPrimarySlotKeeps("dc1-a", "sdr_p_dc2a", start, tc.o); (err != nil) != tc.wantErr {
				t.Fatalf("error %v, want error %v", err, tc.wantErr)
			}
		})
	}
}

func TestBackupStartLSN(t *testing.T) {
	label := "START WAL LOCATION: 0/5000028 (file 000000010000000000000005)\nCHECKPOINT LOCATION: 0/5000060\n" +
		"BACKUP METHOD: streamed\nBACKUP FROM: primary\nSTART TIME: 2026-11-21 12:00:00 UTC\nLABEL: pg_basebackup base backup\nSTART TIMELINE: 1\n"
	cases := []struct {
		name    string
		in      string
		want    cluster.LSN
		wantErr bool
	}{
		{"pg_basebackup's label", label, 0x5000028, false},
		{"high half", "START WAL LOCATION: 1A/B374D848 (file 000000010000001A000000B3)\n", 0x1A_B374D848, false},
		{"no start line", "CHECKPOINT LOCATION: 0/5000060\n", 0, true},
		{"empty value", "START WAL LOCATION:\n", 0, true},
		{"bad LSN", "START WAL LOCATION: 0-5 (file x)\n", 0, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := backupStartLSN(tc.in)
			if (err != nil) != tc.wantErr || got != tc.want {
				t.Fatalf("got %s %v, want %s error %v", got, err, tc.want, tc.wantErr)
			}
		})
	}
}

// TestFanOutSource runs the main standby's script with stand-ins for
// pg_basebackup and tar: the stream reaches both stdout and the local
// extract, and a failure on either side ends the script with the right
// exit code instead of hanging.
func TestFanOutSource(t *testing.T) {
	const big = "head -c 3000000 /dev/zero | tr '\\0' x"
	cases := []struct {
		name     string
		pgbb     string
		extract  func(dir string) string
		wantCode int
		wantOut  int // bytes on stdout (-1: do not check)
		wantFile int // bytes the extract wrote (-1: do not check)
	}{
		{"both sides succeed", big, func(d string) string { return "cat >" + q(d+"/got") }, 0, 3000000, 3000000},
		{"pg_basebackup fails after some output", "printf abc; exit 3", func(d string) string { return "cat >" + q(d+"/got") }, 3, 3, 3},
		{"extract fails at the end", big, func(d string) string { return "cat >" + q(d+"/got") + "; exit 2" }, fanOutExitUnpack, 3000000, 3000000},
		{"extract stops reading early", big, func(d string) string { return "head -c 10 >" + q(d+"/got") + "; exit 2" }, 141, -1, 10},
		{"extract cannot start", big, func(d string) string { return "mkdir " + q(d+"/no/such") + " && cat >" + q(d+"/got") }, 141, -1, -1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			script := fanOutSource(tc.pgbb, dir+"/fifo", tc.extract(dir))
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, "/bin/sh", "-c", script)
			var out bytes.Buffer
			cmd.Stdout = &out
			err := cmd.Run()
			if ctx.Err() != nil {
				t.Fatal("the script hung")
			}
			code := 0
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				code = ee.ExitCode()
			}
			if code != tc.wantCode {
				t.Fatalf("exit code %d, want %d (%v)", code, tc.wantCode, err)
			}
			if tc.wantOut >= 0 && out.Len() != tc.wantOut {
				t.Errorf("stdout %d bytes, want %d", out.Len(), tc.wantOut)
			}
			if tc.wantFile >= 0 {
				got, _ := os.ReadFile(dir + "/got")
				if len(got) != tc.wantFile {
					t.Errorf("extract wrote %d bytes, want %d", len(got), tc.wantFile)
				}
			}
			if _, err := os.Stat(dir + "/fifo"); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("the FIFO is left: %v", err)
			}
		})
	}
}
