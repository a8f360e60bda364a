package steps

import (
	"strings"
	"testing"
)

const autoConf = "/var/lib/postgresql/15/main/postgresql.auto.conf"

var (
	fromDefault = walKeepObs{MB: 0, Source: "default"}
	fromConf    = walKeepObs{MB: 256, Source: "configuration file", SourceFile: "/etc/postgresql/15/main/postgresql.conf"}
	raisedBySdr = walKeepObs{MB: 1024, Source: "configuration file", SourceFile: autoConf}
)

func TestDecideWalKeepRaise(t *testing.T) {
	sdrRaise := &walKeepChange{FromMB: 256, ToMB: 1024}
	tests := []struct {
		name       string
		obs        walKeepObs
		prev       *walKeepChange
		wantRaise  bool
		wantRecord *walKeepChange
	}{
		{name: "default 0 is raised", obs: fromDefault, wantRaise: true, wantRecord: &walKeepChange{FromMB: 0, ToMB: 1024}},
		{name: "postgresql.conf value is raised", obs: fromConf, wantRaise: true, wantRecord: &walKeepChange{FromMB: 256, ToMB: 1024}},
		{name: "a DBA's ALTER SYSTEM value is raised and recorded as in auto.conf",
			obs:       walKeepObs{MB: 300, Source: "configuration file", SourceFile: autoConf},
			wantRaise: true, wantRecord: &walKeepChange{FromMB: 300, FromAuto: true, ToMB: 1024}},
		{name: "higher value left alone", obs: walKeepObs{MB: 2048, Source: "configuration file", SourceFile: autoConf}},
		{name: "exactly the target left alone, no record", obs: walKeepObs{MB: 1024, Source: "configuration file", SourceFile: "/etc/pg.conf"}},
		{name: "another pair's raise is not recorded as ours", obs: raisedBySdr},
		{name: "rerun: sdr's raise still in effect keeps the record", obs: raisedBySdr, prev: sdrRaise, wantRecord: sdrRaise},
		{name: "changed since the record: record dropped",
			obs:  walKeepObs{MB: 2048, Source: "configuration file", SourceFile: autoConf},
			prev: sdrRaise},
		{name: "same value moved to postgresql.conf: record dropped",
			obs:  walKeepObs{MB: 1024, Source: "configuration file", SourceFile: "/etc/pg.conf"},
			prev: sdrRaise},
		{name: "record written but the raise never happened: recorded again",
			obs: fromConf, prev: sdrRaise, wantRaise: true, wantRecord: sdrRaise},
		{name: "lowered by a DBA since the record: new record with the DBA's value",
			obs:  walKeepObs{MB: 512, Source: "configuration file", SourceFile: autoConf},
			prev: sdrRaise, wantRaise: true, wantRecord: &walKeepChange{FromMB: 512, FromAuto: true, ToMB: 1024}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := decideWalKeepRaise(tt.obs, tt.prev, raisedWalKeepSizeMB)
			if d.Raise != tt.wantRaise {
				t.Errorf("Raise = %v, want %v (%s)", d.Raise, tt.wantRaise, d.Why)
			}
			switch {
			case (d.Record == nil) != (tt.wantRecord == nil):
				t.Errorf("Record = %v, want %v", d.Record, tt.wantRecord)
			case d.Record != nil && *d.Record != *tt.wantRecord:
				t.Errorf("Record = %v, want %v", *d.Record, *tt.wantRecord)
			}
			if d.Why == "" {
				t.Error("no reason given")
			}
		})
	}
}

func TestDecideWalKeepRestore(t *testing.T) {
	tests := []struct {
		name    string
		obs     walKeepObs
		rec     *walKeepChange
		wantSQL string
	}{
		{name: "nothing recorded: nothing done", obs: raisedBySdr},
		{name: "raised from postgresql.conf: reset", obs: raisedBySdr, rec: &walKeepChange{FromMB: 256, ToMB: 1024},
			wantSQL: "ALTER SYSTEM RESET wal_keep_size"},
		{name: "raised from the default: reset", obs: raisedBySdr, rec: &walKeepChange{FromMB: 0, ToMB: 1024},
			wantSQL: "ALTER SYSTEM RESET wal_keep_size"},
		{name: "raised from auto.conf: set back", obs: raisedBySdr, rec: &walKeepChange{FromMB: 300, FromAuto: true, ToMB: 1024},
			wantSQL: "ALTER SYSTEM SET wal_keep_size = '300MB'"},
		{name: "a DBA set another value since: left alone",
			obs: walKeepObs{MB: 2048, Source: "configuration file", SourceFile: autoConf}, rec: &walKeepChange{FromMB: 256, ToMB: 1024}},
		{name: "a DBA lowered it since: left alone",
			obs: walKeepObs{MB: 128, Source: "configuration file", SourceFile: autoConf}, rec: &walKeepChange{FromMB: 256, ToMB: 1024}},
		{name: "same value now from postgresql.conf: left alone",
			obs: walKeepObs{MB: 1024, Source: "configuration file", SourceFile: "/etc/pg.conf"}, rec: &walKeepChange{FromMB: 256, ToMB: 1024}},
		{name: "same value from the command line: left alone",
			obs: walKeepObs{MB: 1024, Source: "command line"}, rec: &walKeepChange{FromMB: 256, ToMB: 1024}},
		{name: "already put back (a rerun after the restore): left alone",
			obs: fromConf, rec: &walKeepChange{FromMB: 256, ToMB: 1024}},
		{name: "auto.conf named relative to the data directory", obs: walKeepObs{MB: 1024, Source: "configuration file", SourceFile: "postgresql.auto.conf"},
			rec: &walKeepChange{FromMB: 256, ToMB: 1024}, wantSQL: "ALTER SYSTEM RESET wal_keep_size"},
		{name: "a file merely ending in auto.conf is not postgresql.auto.conf",
			obs: walKeepObs{MB: 1024, Source: "configuration file", SourceFile: "/etc/my-postgresql.auto.conf"}, rec: &walKeepChange{FromMB: 256, ToMB: 1024}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := decideWalKeepRestore(tt.obs, tt.rec)
			if d.SQL != tt.wantSQL {
				t.Errorf("SQL = %q, want %q (%s)", d.SQL, tt.wantSQL, d.Why)
			}
			if d.Why == "" {
				t.Error("no reason given")
			}
		})
	}
}

// TestWalKeepTwoPairs plays two pairs on one primary through the two
// decisions, in the orders their steps can interleave.
func TestWalKeepTwoPairs(t *testing.T) {
	type pairState struct{ rec *walKeepChange }
	auto := func(mb int) walKeepObs {
		return walKeepObs{MB: mb, Source: "configuration file", SourceFile: autoConf}
	}
	tests := []struct {
		name  string
		order string // sequence of "a4", "b4", "a9", "b9"
		want  walKeepObs
	}{
		{"a then b, one after the other", "a4 a9 b4 b9", fromConf},
		{"b raises while a's raise is in effect", "a4 b4 a9 b9", fromConf},
		{"a finishes last", "a4 b4 b9 a9", fromConf},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cur := fromConf
			pairs := map[byte]*pairState{'a': {}, 'b': {}}
			for _, ev := range strings.Fields(tt.order) {
				p := pairs[ev[0]]
				switch ev[1] {
				case '4':
					d := decideWalKeepRaise(cur, p.rec, raisedWalKeepSizeMB)
					p.rec = d.Record
					if d.Raise {
						cur = auto(d.Record.ToMB)
					}
				case '9':
					d := decideWalKeepRestore(cur, p.rec)
					if d.SQL != "" {
						if p.rec.FromAuto {
							cur = auto(p.rec.FromMB)
						} else {
							cur = fromConf // RESET: postgresql.conf's value again
						}
					}
					p.rec = nil
				}
			}
			if cur != tt.want {
				t.Errorf("wal_keep_size ends as %s, want %s", cur, tt.want)
			}
		})
	}
}

func TestParseWalKeepChange(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    walKeepChange
		wantErr bool
	}{
		{name: "round trip", in: walKeepChange{FromMB: 256, FromAuto: true, ToMB: 1024}.String(), want: walKeepChange{FromMB: 256, FromAuto: true, ToMB: 1024}},
		{name: "zero", in: "from=0;from_auto=false;to=1024", want: walKeepChange{ToMB: 1024}},
		{name: "SQL in the value", in: "from=0MB'; DROP TABLE x; --;from_auto=false;to=1024", wantErr: true},
		{name: "negative", in: "from=-1;from_auto=false;to=1024", wantErr: true},
		{name: "leading zero", in: "from=0256;from_auto=false;to=1024", wantErr: true},
		{name: "unit", in: "from=256MB;from_auto=false;to=1024", wantErr: true},
		{name: "missing to", in: "from=256;from_auto=false", wantErr: true},
		{name: "bad bool", in: "from=256;from_auto=maybe;to=1024", wantErr: true},
		{name: "extra field", in: "from=256;from_auto=false;to=1024;x=1", wantErr: true},
		{name: "empty", in: "", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseWalKeepChange(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if err == nil && got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestLegacyWalKeepChange(t *testing.T) {
	tests := []struct {
		name      string
		orig      string
		origSet   bool
		auto      string
		want      walKeepChange
		wantOK    bool
		wantError bool
	}{
		{name: "nothing saved"},
		{name: "saved 256 from postgresql.conf", orig: "256", origSet: true, auto: "false", want: walKeepChange{FromMB: 256, ToMB: 1024}, wantOK: true},
		{name: "saved 300 from auto.conf", orig: "300", origSet: true, auto: "true", want: walKeepChange{FromMB: 300, FromAuto: true, ToMB: 1024}, wantOK: true},
		{name: "saved value was high enough: never raised", orig: "2048", origSet: true, auto: "true"},
		{name: "not a number", orig: "256'; --", origSet: true, wantError: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok, err := legacyWalKeepChange(tt.orig, tt.origSet, tt.auto)
			if (err != nil) != tt.wantError || ok != tt.wantOK || got != tt.want {
				t.Errorf("legacyWalKeepChange = %+v, %v, %v; want %+v, %v, error %v", got, ok, err, tt.want, tt.wantOK, tt.wantError)
			}
		})
	}
}

func TestWalKeepRestored(t *testing.T) {
	tests := []struct {
		name string
		obs  walKeepObs
		rec  walKeepChange
		want bool
	}{
		{"reset: back to postgresql.conf", fromConf, walKeepChange{FromMB: 256, ToMB: 1024}, true},
		{"reset: back to default", fromDefault, walKeepChange{FromMB: 0, ToMB: 1024}, true},
		{"reset: reload not seen yet", raisedBySdr, walKeepChange{FromMB: 256, ToMB: 1024}, false},
		{"set: value back in auto.conf", walKeepObs{MB: 300, Source: "configuration file", SourceFile: autoConf}, walKeepChange{FromMB: 300, FromAuto: true, ToMB: 1024}, true},
		{"set: reload not seen yet", raisedBySdr, walKeepChange{FromMB: 300, FromAuto: true, ToMB: 1024}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := walKeepRestored(tt.obs, tt.rec); got != tt.want {
				t.Errorf("walKeepRestored = %v, want %v", got, tt.want)
			}
		})
	}
}
