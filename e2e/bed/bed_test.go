package bed

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestBed(t *testing.T) {
	if os.Getenv("SDR_E2E") != "1" {
		t.Skip("set SDR_E2E=1 to run the end-to-end test bed")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	start := time.Now()
	b, err := New(ctx, Options{Log: t.Logf})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Logf("bed built in %s", time.Since(start).Round(time.Millisecond))
	closed := false
	defer func() {
		if !closed {
			if t.Failed() {
				t.Log(b.NodeLogs())
			}
			_ = b.Close(t.Failed())
		}
	}()

	// SSH with the generated key and known_hosts, strict host key checking.
	args := append(b.SSHArgs(), "id -un; hostname")
	out, err := exec.CommandContext(ctx, args[0], args[1:]...).CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "postgres\n") {
		t.Errorf("ssh: %v: %s", err, out)
	}
	// ... and as in the brief, spelled out.
	out, err = exec.CommandContext(ctx, "ssh", "-i", b.ClientKey, "-o", "UserKnownHostsFile="+b.KnownHosts,
		"-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-p", itoa(b.SSHPort),
		"postgres@127.0.0.1", "true").CombinedOutput()
	if err != nil {
		t.Errorf("ssh true: %v: %s", err, out)
	}
	// A wrong known_hosts must be refused.
	bad := filepath.Join(b.Dir, "bad_known_hosts")
	if err := os.WriteFile(bad, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.CommandContext(ctx, "ssh", "-F", "/dev/null", "-i", b.ClientKey, "-o", "UserKnownHostsFile="+bad,
		"-o", "GlobalKnownHostsFile=/dev/null", "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes",
		"-p", itoa(b.SSHPort), "postgres@127.0.0.1", "true").CombinedOutput(); err == nil {
		t.Errorf("ssh with empty known_hosts succeeded: %s", out)
	}
	// psql over ssh, the way sdr reaches a node.
	n := b.Node(DC1A)
	if got, err := b.SSH(ctx, "psql -XAtq -h "+n.SocketDir+" -p "+itoa(n.Port)+" -c 'select current_setting($$cluster_name$$)'"); err != nil || got != DC1A {
		t.Errorf("psql over ssh: %q, %v", got, err)
	}

	for _, c := range []struct{ up, sb string }{{DC1A, DC1B}, {DC2A, DC2B}} {
		if got, err := b.SQL(ctx, c.sb, "select pg_is_in_recovery()"); err != nil || got != "t" {
			t.Errorf("%s in recovery: %q, %v", c.sb, got, err)
		}
		if got, err := b.SQL(ctx, c.up, "select pg_is_in_recovery()"); err != nil || got != "f" {
			t.Errorf("%s in recovery: %q, %v", c.up, got, err)
		}
		q := "select state from pg_stat_replication where application_name = '" + c.sb + "'"
		if got, err := b.SQL(ctx, c.up, q); err != nil || got != "streaming" {
			t.Errorf("%s streaming from %s: %q, %v", c.sb, c.up, got, err)
		}
		if got, err := b.SQL(ctx, c.sb, "show cluster_name"); err != nil || got != c.sb {
			t.Errorf("%s cluster_name: %q, %v", c.sb, got, err)
		}
	}
	// Writes reach the in-cluster standby.
	if _, err := b.SQL(ctx, DC1A, "create table t(x int); insert into t values (42)"); err != nil {
		t.Fatal(err)
	}
	if err := waitFor(ctx, 10*time.Second, func() error {
		_, err := b.SQL(ctx, DC1B, "select x from t")
		return err
	}); err != nil {
		t.Errorf("replicated table on dc1-b: %v", err)
	}
	if err := b.Pgbench(ctx, DC1A, "-i", "-s", "1", "-q"); err != nil {
		t.Errorf("pgbench -i: %v", err)
	}

	hba, err := b.SQL(ctx, DC2A, "select count(*) from pg_hba_file_rules where address = '10.99.0.0'")
	if err != nil || hba != "1" {
		t.Errorf("dc2-a custom hba line: %q, %v", hba, err)
	}
	data, err := os.ReadFile(filepath.Join(b.Node(DC2A).DataDir, "pg_hba.conf"))
	if err != nil || !strings.Contains(string(data), "# custom-dc2") {
		t.Errorf("dc2-a pg_hba.conf lacks the custom line: %v", err)
	}
	if ident, err := b.SQL(ctx, DC2A, "select count(*) from pg_ident_file_mappings where map_name = 'custommap'"); err != nil || ident != "1" {
		t.Errorf("dc2-a custom ident line: %q, %v", ident, err)
	}

	// Config and password file.
	cfg, err := os.ReadFile(b.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"name: drpair", "main: dc2-a", "password_file: " + b.PasswordFile, "known_hosts: " + b.KnownHosts} {
		if !strings.Contains(string(cfg), want) {
			t.Errorf("config lacks %q:\n%s", want, cfg)
		}
	}
	if !strings.Contains(b.Password, ":") {
		t.Errorf("password %q has no ':'", b.Password)
	}
	if fi, err := os.Stat(b.PasswordFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("password file mode: %v %v", fi, err)
	}
	p, err := b.WriteConfig(func(m *map[string]any) { (*m)["name"] = "other" })
	if err != nil {
		t.Fatal(err)
	}
	if data, _ := os.ReadFile(p); !strings.Contains(string(data), "name: other") {
		t.Errorf("WriteConfig: %s", data)
	}
	if l, err := Load(b.Dir); err != nil || l.Nodes[DC2B].Port != b.Nodes[DC2B].Port || l.Password != b.Password {
		t.Errorf("Load: %v", err)
	}
	if logs := b.NodeLogs(); !strings.Contains(logs, "===== dc2-b") || !strings.Contains(logs, "===== sshd") {
		t.Errorf("NodeLogs:\n%s", logs)
	}

	if len(Leftovers(b.Dir)) < 8 {
		t.Errorf("Leftovers before Close: %v (expected the servers)", Leftovers(b.Dir))
	}
	if t.Failed() {
		return
	}
	dir := b.Dir
	closed = true
	if err := b.Close(false); err != nil {
		t.Errorf("Close: %v", err)
	}
	if l := Leftovers(dir); len(l) > 0 {
		t.Errorf("processes left after Close: %v", l)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("%s still there: %v", dir, err)
	}
}

func itoa(i int) string { return strconv.Itoa(i) }
