package steps

import (
	"reflect"
	"strings"
	"testing"

	"github.com/pgsdr/sdr/cluster"
)

func TestHbaFields(t *testing.T) {
	tok := func(v string) hbaToken { return hbaToken{Value: v} }
	q := func(v string) hbaToken { return hbaToken{Value: v, Quoted: true} }
	tests := []struct {
		name string
		line string
		want [][]hbaToken
	}{
		{"simple", "host all all 10.0.0.0/8 md5", [][]hbaToken{{tok("host")}, {tok("all")}, {tok("all")}, {tok("10.0.0.0/8")}, {tok("md5")}}},
		{"tabs and comment", "host\treplication\trepl  ::1/128\tscram-sha-256 # loopback",
			[][]hbaToken{{tok("host")}, {tok("replication")}, {tok("repl")}, {tok("::1/128")}, {tok("scram-sha-256")}}},
		{"lists with and without spaces", "host db1,db2 a, b all trust",
			[][]hbaToken{{tok("host")}, {tok("db1"), tok("db2")}, {tok("a"), tok("b")}, {tok("all")}, {tok("trust")}}},
		{"quoted keyword is a name", `host "replication" "all" all trust`,
			[][]hbaToken{{tok("host")}, {q("replication")}, {q("all")}, {tok("all")}, {tok("trust")}}},
		{"quoted comma and hash", `host "a,b#c" u all trust`,
			[][]hbaToken{{tok("host")}, {q("a,b#c")}, {tok("u")}, {tok("all")}, {tok("trust")}}},
		{"comment only", "# host all all all trust", nil},
		{"blank", "   ", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := hbaFields(tt.line); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("hbaFields(%q) =\n%v\nwant\n%v", tt.line, got, tt.want)
			}
		})
	}
}

// syn16 is how PostgreSQL 16 and later read pg_hba.conf.
var syn16 = features(160000).hbaSyntax()

// The Debian/initdb default for PostgreSQL 15 with scram-sha-256.
const defaultHBA = `# TYPE  DATABASE        USER            ADDRESS                 METHOD
local   all             all                                     peer
host    all             all             127.0.0.1/32            scram-sha-256
host    all             all             ::1/128                 scram-sha-256
local   replication     all                                     peer
host    replication     all             127.0.0.1/32            scram-sha-256
host    replication     all             ::1/128                 scram-sha-256
`

func TestPlaceHBABlock(t *testing.T) {
	block := "# BEGIN sdr pair1\nhost replication sdr_repl 10.0.2.10/32 scram-sha-256\nhost postgres sdr_repl 10.0.2.10/32 scram-sha-256\n# END sdr pair1\n"
	conns := hbaConns("sdr_repl", "postgres", []string{"10.0.2.10", "10.0.2.11"})
	tests := []struct {
		name       string
		content    string
		conns      []hbaConn // default conns
		want       hbaPlacement
		wantErr    bool
		mentions   []string
		wantLineNo string // "line N" the error names
	}{
		{name: "empty file: append", content: ""},
		{name: "default file: nothing shadows, append", content: defaultHBA},
		{name: "default file on loopback: same method lines may come first",
			content: defaultHBA, conns: hbaConns("sdr_repl", "postgres", []string{"127.0.0.1"})},
		{name: "md5 line first is fine", content: "host replication all 10.0.0.0/8 md5\n"},
		{name: "generic reject for replication: new block goes before it",
			content: "local all all peer\nhost replication all 10.0.0.0/8 reject\nhost all all 0.0.0.0/0 scram-sha-256\n",
			want:    hbaPlacement{Before: 2}},
		{name: "catch-all reject at the end: new block goes before it",
			content: defaultHBA + "host all all 0.0.0.0/0 reject\n", want: hbaPlacement{Before: 8}},
		{name: "reject for another network does not matter",
			content: "host replication all 192.168.0.0/16 reject\n"},
		{name: "reject for another user does not matter",
			content: "host replication alice 10.0.0.0/8 reject\n"},
		{name: "reject for a normal database only does not shadow replication but shadows the check database",
			content: "host postgres all 10.0.2.0/24 reject\n", want: hbaPlacement{Before: 1}},
		{name: "all does not match replication connections",
			content: "host all sdr_repl2 10.0.2.10/32 reject\nhost otherdb all 10.0.2.10/32 reject\n"},
		{name: "address and netmask in two fields",
			content: "host replication all 10.0.2.0 255.255.255.0 trust\n", want: hbaPlacement{Before: 1}},
		{name: "netmask that excludes the host",
			content: "host replication all 10.0.3.0 255.255.255.0 trust\n"},
		{name: "IPv6 rule does not match IPv4 hosts",
			content: "host replication all ::/0 reject\n"},
		{name: "IPv6 host matched by an IPv6 rule",
			content: "host replication all fd00::/8 reject\n", conns: hbaConns("sdr_repl", "postgres", []string{"fd00::2:10"}),
			want: hbaPlacement{Before: 1}},
		{name: "host name rule may match an IP host",
			content: "host replication all dr.example.com ldap ldapserver=x\n", want: hbaPlacement{Before: 1}},
		{name: "samenet may match",
			content: "hostssl replication all samenet cert\n", want: hbaPlacement{Before: 1}},
		{name: "clientcert option shadows",
			content: "hostssl replication all 10.0.0.0/8 scram-sha-256 clientcert=verify-full\n", want: hbaPlacement{Before: 1}},
		{name: "local lines never match",
			content: "local replication all reject\nlocal all all reject\n"},
		{name: "include: new block goes before it",
			content: "local all all peer\ninclude_dir conf.d\n", want: hbaPlacement{Before: 2}},
		{name: "include_if_exists: new block goes before it",
			content: "include_if_exists extra.conf\n", want: hbaPlacement{Before: 1}},
		{name: "+group of other roles does not match (sdr refuses memberships)",
			content: "host replication +admins 10.0.0.0/8 reject\n"},
		{name: "@file may match",
			content: "host replication @users 10.0.0.0/8 reject\n", want: hbaPlacement{Before: 1}},
		{name: "sameuser matches when the database is the user's name",
			content: "host sameuser all 10.0.0.0/8 reject\n", conns: hbaConns("sdr_repl", "sdr_repl", []string{"10.0.2.10"}),
			want: hbaPlacement{Before: 1}},
		{name: "sameuser does not match another database",
			content: "host sameuser all 10.0.0.0/8 reject\n"},
		{name: "continued line (PostgreSQL 16)",
			content: "host replication all \\\n  10.0.0.0/8 reject\nlocal all all peer\n", want: hbaPlacement{Before: 1}},
		{name: "existing block, nothing before it: replaced in place",
			content: "local all all peer\n" + block + "host replication all 0.0.0.0/0 reject\n", want: hbaPlacement{Exists: true}},
		{name: "existing block with a generic reject before it: refused naming the line",
			content: "local all all peer\nhost replication all 10.0.0.0/8 reject\n" + block,
			wantErr: true, mentions: []string{"pg_hba.conf line 2", "host replication all 10.0.0.0/8 reject", "# BEGIN sdr pair1"}},
		{name: "existing block after an include: refused",
			content: "include_dir conf.d\n" + block, wantErr: true, mentions: []string{"line 1", "include_dir conf.d"}},
		{name: "existing block after a compatible line: fine",
			content: defaultHBA + "host replication all 10.0.0.0/8 scram-sha-256\n" + block, want: hbaPlacement{Exists: true}},
		{name: "a reject written for the replication user: refused",
			content: "host replication sdr_repl 10.0.2.10/32 reject\n", wantErr: true, mentions: []string{"line 1", "sdr_repl itself"}},
		{name: "a cert rule for the replication user: refused",
			content: defaultHBA + "hostssl replication sdr_repl 10.0.2.0/24 cert\n", wantErr: true, mentions: []string{"line 8", "cert"}},
		{name: "a rule for the replication user after an existing block: refused too",
			content: block + "host replication sdr_repl 10.0.2.0/24 reject\n", wantErr: true, mentions: []string{"line 5"}},
		{name: "a scram rule for the replication user: fine",
			content: "host replication sdr_repl 10.0.2.0/24 scram-sha-256\n"},
		{name: "a rule for the user from elsewhere: fine",
			content: "host replication sdr_repl 192.168.1.0/24 reject\n"},
		{name: "another pair's block is an ordinary set of lines",
			content: "# BEGIN sdr pair2\nhost replication sdr_repl 10.0.2.10/32 scram-sha-256\n# END sdr pair2\n"},
		{name: "an unterminated BEGIN is not a block",
			content: "# BEGIN sdr pair1\nhost replication all 10.0.0.0/8 reject\n", want: hbaPlacement{Before: 2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := conns
			if tt.conns != nil {
				c = tt.conns
			}
			got, err := placeHBABlock("/etc/pg/pg_hba.conf", tt.content, "pair1", c, syn16)
			assertErr(t, err, tt.wantErr, true, "/etc/pg/pg_hba.conf")
			for _, m := range tt.mentions {
				if err != nil && !strings.Contains(err.Error(), m) {
					t.Errorf("error %q does not mention %q", err, m)
				}
			}
			if err == nil && got != tt.want {
				t.Errorf("placeHBABlock = %+v, want %+v", got, tt.want)
			}
		})
	}
}

// TestHBABlockTakesEffect writes the block where placeHBABlock says and
// checks that the first matching line for each of sdr's connections is
// then sdr's own.
func TestHBABlockTakesEffect(t *testing.T) {
	cfg := &cluster.Config{Name: "pair1", Replication: cluster.Replication{User: "sdr_repl"}, Postgres: cluster.PGAdmin{Database: "postgres"}}
	nodes := []cluster.Node{{Name: "dc2-a", Host: "10.0.2.10"}, {Name: "dc2-b", Host: "fd00::2:11"}, {Name: "dc2-c", Host: "dr3.example.com"}}
	hosts := []string{"10.0.2.10", "fd00::2:11", "dr3.example.com"}
	conns := hbaConns("sdr_repl", "postgres", hosts)
	for _, content := range []string{
		defaultHBA,
		"local all all peer\nhost replication all 10.0.0.0/8 reject\nhost all all ::/0 reject\n",
		defaultHBA + "host all all 0.0.0.0/0 reject\nhost all all ::/0 reject\n",
		"include_dir conf.d\n",
	} {
		place, err := placeHBABlock("pg_hba.conf", content, "pair1", conns, syn16)
		if err != nil {
			t.Fatalf("placeHBABlock: %v\n%s", err, content)
		}
		out := cluster.InsertBlockBefore(content, "pair1", hbaLines(cfg, nodes), place.Before)
		for _, c := range conns {
			for _, r := range parseHBA(out, "pair1", syn16) {
				if m, _ := hbaRuleMatch(r, c); m == noMatch {
					continue
				}
				if !r.InBlock && !hbaCompatible(r) {
					t.Errorf("for %s the first matching line is %d (%s), not sdr's:\n%s", describeConn(c), r.Line, r.Text, out)
				}
				break
			}
		}
		// Placing again on the result changes nothing.
		again, err := placeHBABlock("pg_hba.conf", out, "pair1", conns, syn16)
		if err != nil || !again.Exists {
			t.Errorf("second placement = %+v, %v; want the existing block kept", again, err)
		}
		if out2 := cluster.InsertBlockBefore(out, "pair1", hbaLines(cfg, nodes), again.Before); out2 != out {
			t.Errorf("second write changed the file:\n%s\nthen\n%s", out, out2)
		}
	}
}
