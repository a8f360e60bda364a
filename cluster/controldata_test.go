package cluster

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseLSN(t *testing.T) {
	cases := []struct {
		in   string
		want LSN
		ok   bool
		str  string
	}{
		{"16/B374D848", 0x16_B374D848, true, "16/B374D848"},
		{"0/0", 0, true, "0/0"},
		{"0/06000F28", 0x6000F28, true, "0/6000F28"}, // PostgreSQL 18 pads the low half
		{"FFFFFFFF/FFFFFFFF", ^LSN(0), true, "FFFFFFFF/FFFFFFFF"},
		{"a/b", 0xa_0000000b, true, "A/B"},
		{"", 0, false, ""},
		{"16", 0, false, ""},
		{"16/", 0, false, ""},
		{"/1", 0, false, ""},
		{"1/2/3", 0, false, ""},
		{"G/1", 0, false, ""},
		{"1/123456789", 0, false, ""},
		{"-1/1", 0, false, ""},
	}
	for _, tc := range cases {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseLSN(tc.in)
			if (err == nil) != tc.ok || got != tc.want {
				t.Fatalf("ParseLSN(%q) = %v, %v", tc.in, got, err)
			}
			if tc.ok && got.String() != tc.str {
				t.Fatalf("String() = %q, want %q", got.String(), tc.str)
			}
		})
	}
}

func readControlSample(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "controldata", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestParseControlData(t *testing.T) {
	const sysid = "7710582882480885847"
	initdb := ControlData{SystemID: sysid, State: StateShutDown, CheckpointLSN: 0x1500718, RedoLSN: 0x1500718,
		RedoWALFile: "000000010000000000000001", TimeLineID: 1, PrevTimeLineID: 1,
		CheckpointTime: "Sat Nov 21 11:19:36 2026", ControlVersion: 1300, WALSegSize: 16 << 20}
	with := func(cd ControlData, f func(*ControlData)) ControlData { f(&cd); return cd }
	standby := ControlData{SystemID: sysid, State: StateInArchiveRecovery, CheckpointLSN: 0x5000060, RedoLSN: 0x5000028,
		RedoWALFile: "000000010000000000000005", TimeLineID: 1, PrevTimeLineID: 1,
		CheckpointTime: "Sat Nov 21 11:19:58 2026", MinRecoveryLSN: 0x5000100, MinRecoveryTLI: 1, ControlVersion: 1300, WALSegSize: 16 << 20}
	promoted := ControlData{SystemID: sysid, State: StateShutDown, CheckpointLSN: 0x6000F28, RedoLSN: 0x6000F28,
		RedoWALFile: "000000020000000000000006", TimeLineID: 2, PrevTimeLineID: 2,
		CheckpointTime: "Sat Nov 21 11:19:59 2026", ControlVersion: 1300, WALSegSize: 16 << 20}
	cases := []struct {
		file string
		want ControlData
	}{
		{"pg15_shut_down.txt", initdb},
		{"pg15_in_production.txt", with(initdb, func(c *ControlData) { c.State = StateInProduction })},
		{"pg15_crashed_in_production.txt", with(initdb, func(c *ControlData) {
			c.State, c.CheckpointLSN, c.RedoLSN = StateInProduction, 0x4000060, 0x4000028
			c.RedoWALFile, c.CheckpointTime = "000000010000000000000004", "Sat Nov 21 11:19:46 2026"
		})},
		{"pg15_in_archive_recovery.txt", standby},
		{"pg15_shut_down_in_recovery.txt", with(standby, func(c *ControlData) {
			c.State, c.MinRecoveryLSN = StateShutDownInRecovery, 0x6000000
		})},
		{"pg15_promoted_shut_down.txt", promoted},
		{"pg15_checksums_hints.txt", with(initdb, func(c *ControlData) {
			c.SystemID, c.CheckpointLSN, c.RedoLSN, c.CheckpointTime = "7710583001469195543", 0x17415A8, 0x17415A8, "Sat Nov 21 11:20:04 2026"
			c.DataChecksums, c.WalLogHints = 1, true
		})},
		{"pg15_in_crash_recovery.written.txt", with(initdb, func(c *ControlData) { c.State = StateInCrashRecovery })},
		{"pg15_starting_up.written.txt", with(initdb, func(c *ControlData) { c.State = StateStartingUp })},
		{"pg15_shutting_down.written.txt", with(initdb, func(c *ControlData) { c.State = StateShuttingDown })},
		{"pg13_shut_down.written.txt", initdb},
		{"pg14_in_production.written.txt", with(initdb, func(c *ControlData) { c.State = StateInProduction })},
		{"pg16_in_archive_recovery.written.txt", standby},
		{"pg17_shut_down_in_recovery.written.txt", with(standby, func(c *ControlData) {
			c.State, c.MinRecoveryLSN, c.ControlVersion = StateShutDownInRecovery, 0x6000000, 1700
		})},
		{"pg18_promoted_shut_down.written.txt", with(promoted, func(c *ControlData) { c.ControlVersion = 1800 })},
	}
	for _, tc := range cases {
		t.Run(tc.file, func(t *testing.T) {
			got, err := ParseControlData(readControlSample(t, tc.file))
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Fatalf("got\n  %+v\nwant\n  %+v", got, tc.want)
			}
		})
	}
}

func TestParseControlDataErrors(t *testing.T) {
	good := readControlSample(t, "pg15_shut_down.txt")
	replace := func(old, new string) string {
		if !strings.Contains(good, old) {
			t.Fatalf("sample lacks %q", old)
		}
		return strings.Replace(good, old, new, 1)
	}
	cases := []struct {
		name  string
		out   string
		names []string // what the error must name
	}{
		{"empty output", "", []string{`no "Database system identifier" line`, `no "Database cluster state" line`}},
		{"missing state", replace("Database cluster state:               shut down\n", ""), []string{`no "Database cluster state" line`}},
		{"unknown state", replace("state:               shut down", "state:               unrecognized status code"),
			[]string{`"Database cluster state" is "unrecognized status code"`}},
		{"garbled LSN", replace("Latest checkpoint location:           0/1500718", "Latest checkpoint location:           0-1500718"),
			[]string{`"Latest checkpoint location"`, `"0-1500718"`}},
		{"garbled timeline", replace("Latest checkpoint's TimeLineID:       1", "Latest checkpoint's TimeLineID:       one"),
			[]string{`"Latest checkpoint's TimeLineID" is "one"`}},
		{"garbled system id", replace("identifier:           7710582882480885847", "identifier:           77x"),
			[]string{`"Database system identifier" is "77x"`}},
		{"empty value", replace("REDO WAL file:    000000010000000000000001", "REDO WAL file:    "),
			[]string{`"Latest checkpoint's REDO WAL file" is empty`}},
		{"wal_log_hints neither on nor off", replace("wal_log_hints setting:                off", "wal_log_hints setting:                maybe"),
			[]string{`"wal_log_hints setting" is "maybe"`}},
		{"WAL segment size not a power of two", replace("Bytes per WAL segment:                16777216", "Bytes per WAL segment:                16777215"),
			[]string{`"Bytes per WAL segment" is "16777215"`}},
		{"corrupt pg_control", "WARNING: Calculated CRC checksum does not match value stored in file.\n" +
			"Either the file is corrupt, or it has a different layout than this program\nis expecting.  The results below are untrustworthy.\n\n" + good,
			[]string{"Calculated CRC checksum does not match"}},
		{"localised output", strings.ReplaceAll(good, "Database cluster state", "Zustand des Datenbankclusters"),
			[]string{`no "Database cluster state" line`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseControlData(tc.out)
			if !errors.Is(err, ErrBadControlData) {
				t.Fatalf("want ErrBadControlData, got %v", err)
			}
			for _, n := range tc.names {
				if !strings.Contains(err.Error(), n) {
					t.Errorf("%v\ndoes not name %s", err, n)
				}
			}
		})
	}
}

const pgBinDir = "/usr/lib/postgresql/15/bin"

// controlDataDir makes dir look like a data directory whose pg_control is
// the one of testdata/pg_control.pg15 (from the cluster of
// controldata/pg15_shut_down.txt).
func controlDataDir(t *testing.T, dir string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "pg_control.pg15"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "global"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "global", "pg_control"), b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestReadControlDataConformance(t *testing.T) {
	if _, err := os.Stat(filepath.Join(pgBinDir, "pg_controldata")); err != nil {
		t.Skipf("PostgreSQL 15 is not installed here (%v)", err)
	}
	runConformance(t, []conformanceCase{
		{"a pg_control is read", func(t *testing.T, a Access, dir string) {
			controlDataDir(t, dir)
			got, err := ReadControlData(context.Background(), a, pgBinDir, dir)
			if err != nil {
				t.Fatal(err)
			}
			want, err := ParseControlData(readControlSample(t, "pg15_shut_down.txt"))
			if err != nil {
				t.Fatal(err)
			}
			// The time is printed in the node's time zone.
			got.CheckpointTime, want.CheckpointTime = "", ""
			if got != want {
				t.Fatalf("got\n  %+v\nwant\n  %+v", got, want)
			}
		}},
		{"no pg_control is ErrNotExist", func(t *testing.T, a Access, dir string) {
			for _, d := range []string{dir, filepath.Join(dir, "missing")} {
				_, err := ReadControlData(context.Background(), a, pgBinDir, d)
				if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), d) || !strings.Contains(err.Error(), "dc1-a") {
					t.Fatalf("%s: want fs.ErrNotExist naming node and dir, got %v", d, err)
				}
			}
		}},
		{"missing pg_controldata is not ErrNotExist", func(t *testing.T, a Access, dir string) {
			controlDataDir(t, dir)
			_, err := ReadControlData(context.Background(), a, filepath.Join(dir, "bin"), dir)
			if err == nil || errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("got %v", err)
			}
		}},
	})
}
