package cluster

import (
	"reflect"
	"strings"
	"testing"
)

func TestReplaceBlock(t *testing.T) {
	hba := "# TYPE DATABASE USER ADDRESS METHOD\nlocal all postgres peer\nhost all all 0.0.0.0/0 scram-sha-256   \n"
	block := "# BEGIN sdr repl\nhost replication repl 10.0.2.10/32 scram-sha-256\n# END sdr repl\n"
	cases := []struct {
		name    string
		content string
		lines   []string
		want    string
	}{
		{"append to file", hba, []string{"host replication repl 10.0.2.10/32 scram-sha-256"}, hba + block},
		{"append to file without final newline", strings.TrimSuffix(hba, "\n"), []string{"host replication repl 10.0.2.10/32 scram-sha-256"}, hba + block},
		{"append to empty file", "", []string{"host replication repl 10.0.2.10/32 scram-sha-256"}, block},
		{"replace in place", "a\n# BEGIN sdr repl\nold\n# END sdr repl\nz\n", []string{"new1", "new2"},
			"a\n# BEGIN sdr repl\nnew1\nnew2\n# END sdr repl\nz\n"},
		{"replace keeps other markers", "# BEGIN sdr other\nx\n# END sdr other\n# BEGIN sdr repl\nold\n# END sdr repl\n", []string{"new"},
			"# BEGIN sdr other\nx\n# END sdr other\n# BEGIN sdr repl\nnew\n# END sdr repl\n"},
		{"remove", "a\n# BEGIN sdr repl\nold\n# END sdr repl\nz", nil, "a\nz"},
		{"remove missing is a no-op", hba, nil, hba},
		{"duplicates collapse to one", "# BEGIN sdr repl\n1\n# END sdr repl\nmid\n# BEGIN sdr repl\n2\n# END sdr repl\n", []string{"n"},
			"# BEGIN sdr repl\nn\n# END sdr repl\nmid\n"},
		{"unterminated begin is left alone", "# BEGIN sdr repl\nkeep\n", []string{"n"},
			"# BEGIN sdr repl\nkeep\n# BEGIN sdr repl\nn\n# END sdr repl\n"},
		{"crlf lines kept", "a\r\n# BEGIN sdr repl\r\nold\r\n# END sdr repl\r\nb\r\n", []string{"n"},
			"a\r\n# BEGIN sdr repl\nn\n# END sdr repl\nb\r\n"},
		{"empty block", "a\n", []string{}, "a\n# BEGIN sdr repl\n# END sdr repl\n"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := ReplaceBlock(tc.content, "repl", tc.lines)
			if got != tc.want {
				t.Fatalf("got\n%q\nwant\n%q", got, tc.want)
			}
			if again := ReplaceBlock(got, "repl", tc.lines); again != got {
				t.Fatalf("not idempotent:\n%q\n%q", got, again)
			}
			wantCount := 1
			if tc.lines == nil {
				wantCount = 0
			}
			if n := CountBlocks(got, "repl"); n != wantCount {
				t.Fatalf("CountBlocks = %d, want %d", n, wantCount)
			}
			if HasBlock(got, "repl") != (wantCount == 1) {
				t.Fatal("HasBlock disagrees")
			}
			if lines, ok := BlockLines(got, "repl"); ok && !reflect.DeepEqual(lines, tc.lines) {
				t.Fatalf("BlockLines = %q, want %q", lines, tc.lines)
			}
		})
	}
}

func TestReplaceBlockPreservesOtherLines(t *testing.T) {
	before := "  # indented comment\t\n\nlocal all all peer\n"
	after := "\n# trailing\nhost all all ::1/128 md5"
	content := ReplaceBlock(before+after, "x", []string{"one"})
	removed := ReplaceBlock(content, "x", nil)
	if removed != before+after+"\n" {
		t.Fatalf("got %q", removed)
	}
	// Put the block between the two halves and replace it: the halves stay.
	mid := before + "# BEGIN sdr x\nold\n# END sdr x\n" + after
	got := ReplaceBlock(mid, "x", []string{"new"})
	if got != before+"# BEGIN sdr x\nnew\n# END sdr x\n"+after {
		t.Fatalf("got %q", got)
	}
}

func TestCountBlocks(t *testing.T) {
	cases := []struct {
		name    string
		content string
		want    int
	}{
		{"none", "a\n", 0},
		{"one", "# BEGIN sdr m\n# END sdr m\n", 1},
		{"two", "# BEGIN sdr m\n# END sdr m\n# BEGIN sdr m\nx\n# END sdr m", 2},
		{"other marker", "# BEGIN sdr mm\n# END sdr mm\n", 0},
		{"end without begin", "# END sdr m\n", 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := CountBlocks(tc.content, "m"); got != tc.want {
				t.Fatalf("got %d, want %d", got, tc.want)
			}
		})
	}
}

func TestPgpassLine(t *testing.T) {
	cases := []struct {
		name                     string
		host, port, db, user, pw string
		want                     string
	}{
		{"plain", "10.0.1.10", "5432", "replication", "repl", "pw", "10.0.1.10:5432:replication:repl:pw"},
		{"colon and backslash", "::1", "5432", "*", "repl", `a:b\c`, `\:\:1:5432:*:repl:a\:b\\c`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := PgpassLine(tc.host, tc.port, tc.db, tc.user, tc.pw); got != tc.want {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestShellQuote(t *testing.T) {
	cases := []struct{ in, want string }{
		{"", "''"},
		{"/var/lib/pg", "/var/lib/pg"},
		{"a b", "'a b'"},
		{"it's", `'it'\''s'`},
		{"$(rm -rf /)", "'$(rm -rf /)'"},
	}
	for _, tc := range cases {
		if got := ShellQuote(tc.in); got != tc.want {
			t.Errorf("ShellQuote(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestInsertBlockBefore(t *testing.T) {
	file := "a\nb\nc\n"
	cases := []struct {
		name    string
		content string
		lines   []string
		before  int
		want    string
	}{
		{"before the first line", file, []string{"n"}, 1, "# BEGIN sdr repl\nn\n# END sdr repl\na\nb\nc\n"},
		{"before a middle line", file, []string{"n"}, 2, "a\n# BEGIN sdr repl\nn\n# END sdr repl\nb\nc\n"},
		{"0 appends", file, []string{"n"}, 0, file + "# BEGIN sdr repl\nn\n# END sdr repl\n"},
		{"past the end appends", file, []string{"n"}, 9, file + "# BEGIN sdr repl\nn\n# END sdr repl\n"},
		{"existing block replaced in place", "a\n# BEGIN sdr repl\nold\n# END sdr repl\nb\n", []string{"n"}, 1,
			"a\n# BEGIN sdr repl\nn\n# END sdr repl\nb\n"},
		{"nil lines remove", "a\n# BEGIN sdr repl\nold\n# END sdr repl\nb\n", nil, 1, "a\nb\n"},
		{"before the last line without newline", "a\nb", []string{"n"}, 2, "a\n# BEGIN sdr repl\nn\n# END sdr repl\nb"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := InsertBlockBefore(tc.content, "repl", tc.lines, tc.before)
			if got != tc.want {
				t.Fatalf("got\n%q\nwant\n%q", got, tc.want)
			}
			if again := InsertBlockBefore(got, "repl", tc.lines, tc.before); again != got {
				t.Errorf("second call changed the content:\n%q\n%q", got, again)
			}
		})
	}
}

func TestRemoveOutside(t *testing.T) {
	drop := func(l string) bool { return strings.HasPrefix(l, "x") }
	tests := []struct{ name, in, want string }{
		{"outside lines only", "a\nx1\n# BEGIN sdr repl\nx2\n# END sdr repl\nx3\nz\n", "a\n# BEGIN sdr repl\nx2\n# END sdr repl\nz\n"},
		{"other markers' blocks are kept too", "# BEGIN sdr other\nx1\n# END sdr other\nx2\n", "# BEGIN sdr other\nx1\n# END sdr other\n"},
		{"an END of another marker does not close a block", "# BEGIN sdr repl\nx1\n# END sdr other\nx2\n# END sdr repl\nx3\n", "# BEGIN sdr repl\nx1\n# END sdr other\nx2\n# END sdr repl\n"},
		{"last line without newline", "a\nx1", "a\n"},
		{"last line dropped, newline kept", "a\nx1\n", "a\n"},
		{"nothing to drop", "a\nb", "a\nb"},
		{"an unclosed block is outside", "# BEGIN sdr repl\nx1\n", "# BEGIN sdr repl\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, _ := RemoveOutside(tt.in, drop)
			if got != tt.want {
				t.Errorf("RemoveOutside(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
	if _, dropped := RemoveOutside("x1\r\n# BEGIN sdr repl\nx2\n# END sdr repl\n", drop); len(dropped) != 1 || dropped[0] != "x1" {
		t.Errorf("dropped %q, want [x1]", dropped)
	}
}
