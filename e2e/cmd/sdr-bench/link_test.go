package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/pgsdr/sdr/steps"
)

func TestParseLinkRate(t *testing.T) {
	for _, c := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"200mbit", 200e6, true},
		{"200Mbit", 200e6, true},
		{" 1gbit ", 1e9, true},
		{"50000kbit", 50e6, true},
		{"1000000bit", 1e6, true},
		{"999kbit", 0, false}, // under 1mbit
		{"20gbit", 0, false},  // over 10gbit
		{"200", 0, false},
		{"200mbps", 0, false},
		{"25MB", 0, false},
		{"", 0, false},
		{"-5mbit", 0, false},
		{"99999999999999999999mbit", 0, false},
	} {
		got, err := parseLinkRate(c.in)
		if (err == nil) != c.ok || got != c.want {
			t.Errorf("parseLinkRate(%q) = %d, %v; want %d, ok %v", c.in, got, err, c.want, c.ok)
		}
	}
}

func TestParseMaxRate(t *testing.T) {
	for _, c := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"12M", 12 << 20, true},
		{"102400", 100 << 20, true},
		{"512k", 512 << 10, true},
		{"32k", 32 << 10, true},
		{"31k", 0, false},
		{"1025M", 0, false},
		{"12MB", 0, false},
		{"12m", 0, false},
		{"", 0, false},
	} {
		got, err := parseMaxRate(c.in)
		if (err == nil) != c.ok || got != c.want {
			t.Errorf("parseMaxRate(%q) = %d, %v; want %d, ok %v", c.in, got, err, c.want, c.ok)
		}
	}
}

func TestTBFArgs(t *testing.T) {
	got := strings.Join(tbfArgs("v1", 200e6), " ")
	if want := "qdisc replace dev v1 root tbf rate 200000000bit burst 250000 latency 100ms"; got != want {
		t.Errorf("tbfArgs = %q, want %q", got, want)
	}
	// A slow link still gets a bucket that holds a full-sized segment.
	if got := strings.Join(tbfArgs("v1", 1e6), " "); !strings.Contains(got, "burst 32768 ") {
		t.Errorf("tbfArgs at 1mbit = %q, want burst 32768", got)
	}
}

func TestWithLinkHBA(t *testing.T) {
	line := linkHBALine("sdr_repl", "postgres")
	if !strings.HasPrefix(line, "host    replication,postgres    sdr_repl    10.213.77.0/24    scram-sha-256") {
		t.Fatalf("linkHBALine = %q", line)
	}
	in := "# comment\nhost all all 0.0.0.0/0 reject\n"
	out := withLinkHBA(in, line)
	if out != line+"\n"+in {
		t.Errorf("withLinkHBA did not put the line first:\n%s", out)
	}
	if again := withLinkHBA(out, line); again != out {
		t.Errorf("withLinkHBA added the line twice:\n%s", again)
	}
}

func TestLinkConfig(t *testing.T) {
	m := map[string]any{"clusters": map[string]any{
		"dc1": map[string]any{"nodes": []any{map[string]any{"name": "dc1-a", "host": "127.0.0.1"}, map[string]any{"name": "dc1-b"}}},
		"dc2": map[string]any{"nodes": []any{map[string]any{"name": "dc2-a"}}},
	}}
	if err := linkConfig(m, "dc1-a", linkNSAddr); err != nil {
		t.Fatal(err)
	}
	nodes := m["clusters"].(map[string]any)["dc1"].(map[string]any)["nodes"].([]any)
	if got := nodes[0].(map[string]any)["replication_host"]; got != linkNSAddr {
		t.Errorf("dc1-a replication_host = %v", got)
	}
	if _, ok := nodes[1].(map[string]any)["replication_host"]; ok {
		t.Errorf("dc1-b got a replication_host")
	}
	if err := linkConfig(m, "dc9-z", linkNSAddr); err == nil {
		t.Errorf("linkConfig of a missing node: no error")
	}
}

func TestSDRKindsMaxRate(t *testing.T) {
	o := options{fanout: true, maxRate: "12M"}
	var names []string
	for _, k := range o.sdrKinds() {
		names = append(names, k.name)
	}
	if got := strings.Join(names, ","); got != "sdr,sdr fan-out,sdr max_rate" {
		t.Errorf("kinds = %s", got)
	}
	k := o.sdrKinds()[2]
	if k.compressed() || k.copyText() != "copy: {max_rate: 12M}" {
		t.Errorf("max_rate kind: compressed %v, %s", k.compressed(), k.copyText())
	}
}

func TestLinkTable(t *testing.T) {
	r := sampleReport()
	r.DBBytes = 770 << 20
	r.Link = &linkInfo{Rate: "200mbit", RateBits: 200e6, MaxRate: "12M", MaxRateBytes: 12 << 20}
	r.FloorRuns = []floorRun{{Wall: 40, Phases: []floorPhase{{Name: "basebackup main", Seconds: 35}}, LinkBytes: 800 << 20}}
	r.SDR.Runs = []sdrRun{{Wall: 41, MainCopy: 34, LinkBytes: 790 << 20}}
	var buf bytes.Buffer
	if err := r.writeTable(&buf); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, want := range [][]string{
		{"link: the primary's replication connections cross a veth pair limited to 200mbit (23.8 MiB/s)"},
		{"floor", "35.000", "800", "22.9", "96 %"},
		{"sdr", "34.000", "790", "23.2", "97 %"},
		{"copy.max_rate 12M is 12.0 MiB/s, 50 % of the link", "770 MiB would take 64.2 s"},
	} {
		if !rowHas(out, want...) {
			t.Errorf("table lacks a row with %q:\n%s", want, out)
		}
	}
	// Without a link, no link table.
	r.Link = nil
	buf.Reset()
	if err := r.writeTable(&buf); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(buf.String(), "the link from the primary") {
		t.Errorf("link table without a link:\n%s", buf.String())
	}
}

func TestFloorMarker(t *testing.T) {
	m, ok := steps.ParseCopyMarker(floorMarker("drpair", "dc2-b", "7301234", "floor-1-dc2-b", "floor-1-dc2-a"))
	if !ok || m.Pair != "drpair" || m.Node != "dc2-b" || m.SystemID != "7301234" || m.CopyID != "floor-1-dc2-b" || m.From != "floor-1-dc2-a" {
		t.Errorf("floor marker reads back as %+v, ok %v", m, ok)
	}
}
