package benchcalls

import (
	"strings"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    []Record
		wantErr bool
	}{
		{name: "empty", in: ""},
		{name: "two calls", in: "pg_ctl\tstatus\t/d/a\t1000\t2000\t3\npg_basebackup\t-\t/d/b.sdr/new\t3000\t9000\t0\n", want: []Record{
			{Prog: "pg_ctl", Mode: "status", Dir: "/d/a", Start: time.Unix(0, 1000), End: time.Unix(0, 2000), Exit: 3},
			{Prog: "pg_basebackup", Mode: "-", Dir: "/d/b.sdr/new", Start: time.Unix(0, 3000), End: time.Unix(0, 9000), Exit: 0},
		}},
		{name: "what Line writes", in: Record{Prog: "pg_ctl", Mode: "start", Dir: "/x", Start: time.Unix(5, 6), End: time.Unix(7, 8), Exit: 1}.Line(),
			want: []Record{{Prog: "pg_ctl", Mode: "start", Dir: "/x", Start: time.Unix(5, 6), End: time.Unix(7, 8), Exit: 1}}},
		{name: "short line", in: "pg_ctl\tstatus\t/d\t1000\n", wantErr: true},
		{name: "old five-field line", in: "pg_ctl\tstatus\t1000\t2000\t0\n", wantErr: true},
		{name: "bad number", in: "pg_ctl\tstatus\t/d\tx\t2000\t0\n", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse(strings.NewReader(tt.in))
			if (err != nil) != tt.wantErr {
				t.Fatalf("Parse error = %v, want error %t", err, tt.wantErr)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("Parse = %+v, want %+v", got, tt.want)
			}
			for i := range got {
				if got[i].Prog != tt.want[i].Prog || got[i].Mode != tt.want[i].Mode || got[i].Dir != tt.want[i].Dir || !got[i].Start.Equal(tt.want[i].Start) ||
					!got[i].End.Equal(tt.want[i].End) || got[i].Exit != tt.want[i].Exit {
					t.Errorf("call %d = %+v, want %+v", i, got[i], tt.want[i])
				}
			}
		})
	}
}

func TestMode(t *testing.T) {
	tests := []struct {
		name string
		prog string
		args []string
		want string
	}{
		{name: "basebackup", prog: "pg_basebackup", args: []string{"-D", "x"}, want: "-"},
		{name: "mode first", prog: "pg_ctl", args: []string{"status", "-D", "/d"}, want: "status"},
		{name: "options first", prog: "pg_ctl", args: []string{"-D", "/d", "stop", "-m", "fast"}, want: "stop"},
		{name: "the first mode wins", prog: "pg_ctl", args: []string{"start", "-D", "stop"}, want: "start"},
		{name: "no mode", prog: "pg_ctl", args: []string{"--version"}, want: "?"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Mode(tt.prog, tt.args); got != tt.want {
				t.Errorf("Mode(%s, %v) = %s, want %s", tt.prog, tt.args, got, tt.want)
			}
		})
	}
}

func TestDataDir(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{name: "-D DIR", args: []string{"status", "-D", "/srv/a"}, want: "/srv/a"},
		{name: "-DDIR", args: []string{"-D/srv/a", "stop"}, want: "/srv/a"},
		{name: "--pgdata DIR", args: []string{"--pgdata", "/srv/a"}, want: "/srv/a"},
		{name: "--pgdata=DIR", args: []string{"--pgdata=/srv/a", "-X", "stream"}, want: "/srv/a"},
		{name: "none", args: []string{"--version"}, want: "-"},
		{name: "-D at the end without a value", args: []string{"status", "-D"}, want: "-"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := DataDir(tt.args); got != tt.want {
				t.Errorf("DataDir(%v) = %s, want %s", tt.args, got, tt.want)
			}
		})
	}
}
