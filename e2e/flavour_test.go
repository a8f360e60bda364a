package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pgsdr/sdr/cluster"
	"github.com/pgsdr/sdr/e2e/bed"
)

// flavour is one way of building the bed that a test runs over.
type flavour struct {
	name string
	opts bed.Options
}

// bedFlavours are the beds the start-pair and kill-during-basebackup
// tests run on: the pg_ctl bed with every node at 127.0.0.1, and a bed
// built the way Debian does it (pg_createcluster, pg_ctlcluster,
// configuration in /etc/postgresql/15/<cluster>) whose nodes sdr reaches
// by host name (localhost) and IPv6 (::1). Without IPv6 on the loopback
// interface the Debian bed uses 127.0.0.1, and the IPv6 checks skip.
func bedFlavours(t *testing.T) []flavour {
	deb := bed.Options{Flavour: bed.FlavourDebian, Addressing: bed.AddrNamesIPv6}
	name := "debian-names-ipv6"
	if !bed.HasIPv6Loopback() {
		t.Logf("no IPv6 on the loopback interface (ip -6 addr show lo): the Debian bed names its nodes 127.0.0.1, " +
			"and the host name and IPv6 checks are skipped")
		deb.Addressing, name = bed.AddrIPv4, "debian"
	}
	return []flavour{{"pg_ctl", bed.Options{}}, {name, deb}}
}

// noSystemd notes that no systemd runs here, so pg_ctlcluster runs
// pg_ctl itself (as in a container); sdr's systemd manager is covered by
// unit tests of its command lines and decisions only.
func noSystemd(t *testing.T) {
	t.Helper()
	if _, err := os.Stat("/run/systemd/system"); err == nil {
		t.Log("note: systemd runs on this machine; the bed's clusters still run outside it (start.conf of the bed is not systemd's)")
		return
	}
	comm, _ := os.ReadFile("/proc/1/comm")
	t.Logf("no systemd here (PID 1 is %q): pg_ctlcluster runs pg_ctl itself; the systemd service manager is unit-tested only",
		strings.TrimSpace(string(comm)))
}

// debianMain is a fingerprint of Debian's own cluster 15/main: its
// pg_lsclusters line, every file of its configuration (content, mode,
// modification time) and the top of its data directory. "" when the
// machine has no such cluster.
func debianMain(t *testing.T) string {
	t.Helper()
	conf := "/etc/postgresql/15/main"
	if _, err := os.Stat(conf); err != nil {
		return ""
	}
	var b strings.Builder
	out, err := exec.Command("pg_lsclusters", "--no-header", "15", "main").CombinedOutput()
	if err != nil {
		t.Fatalf("pg_lsclusters 15 main: %v: %s", err, out)
	}
	b.WriteString(strings.Join(strings.Fields(string(out)), " ") + "\n")
	_ = filepath.WalkDir(conf, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			fmt.Fprintf(&b, "%s: %v\n", p, err)
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return nil
		}
		sum := ""
		if fi.Mode().IsRegular() {
			raw, _ := os.ReadFile(p)
			h := sha256.Sum256(raw)
			sum = hex.EncodeToString(h[:8])
		}
		fmt.Fprintf(&b, "%s %s %s %s\n", p, fi.Mode(), fi.ModTime().UTC().Format(time.RFC3339Nano), sum)
		return nil
	})
	data := "/var/lib/postgresql/15/main"
	ents, _ := os.ReadDir(data)
	for _, e := range ents {
		if fi, err := e.Info(); err == nil {
			fmt.Fprintf(&b, "%s/%s %s %s\n", data, e.Name(), fi.Mode(), fi.ModTime().UTC().Format(time.RFC3339Nano))
		}
	}
	return b.String()
}

// keepDebianMain checks, after the test and its bed are gone, that
// Debian's own cluster 15/main is as it was before.
func keepDebianMain(t *testing.T) {
	t.Helper()
	before := debianMain(t)
	t.Cleanup(func() {
		if after := debianMain(t); after != before {
			t.Errorf("Debian's own cluster 15/main changed:\nbefore:\n%s\nafter:\n%s", before, after)
		}
	})
}

// checkDebianDR checks a Debian bed after the start: every DR node is a
// Debian cluster online and in recovery (pg_lsclusters), every node's
// pg_hba.conf in /etc holds sdr's block once and PostgreSQL loaded it, and
// no node has a pg_hba.conf in its data directory, which its server would
// not read.
func checkDebianDR(t *testing.T, b *bed.Bed) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, n := range []string{bed.DC2A, bed.DC2B} {
		f, err := b.LsClusters(ctx, n)
		if err != nil {
			t.Fatal(err)
		}
		if f[3] != "online,recovery" || f[5] != b.Node(n).DataDir {
			t.Errorf("%s: pg_lsclusters says %q, want online,recovery in %s", n, strings.Join(f, " "), b.Node(n).DataDir)
		}
		if _, err := b.AsPostgres(ctx, "pg_ctlcluster", "15", b.Node(n).Cluster, "status"); err != nil {
			t.Errorf("%s: pg_ctlcluster status: %v", n, err)
		}
	}
	for _, n := range bed.NodeNames {
		hba, err := os.ReadFile(b.HBAFile(n))
		if err != nil {
			t.Fatal(err)
		}
		if c := cluster.CountBlocks(string(hba), b.Name); c != 1 {
			t.Errorf("%s: %s has %d sdr blocks, want 1", n, b.HBAFile(n), c)
		}
		if got := sql(t, b, n, "SELECT current_setting('hba_file')"); got != b.HBAFile(n) {
			t.Errorf("%s: the server reads %s, want %s", n, got, b.HBAFile(n))
		}
		if got := sql(t, b, n, "SELECT count(*) FROM pg_hba_file_rules WHERE '"+b.ReplicationUser+"' = ANY(user_name)"); got == "0" {
			t.Errorf("%s: PostgreSQL did not load sdr's lines from %s", n, b.HBAFile(n))
		}
		for _, f := range []string{"pg_hba.conf", "pg_ident.conf", "postgresql.conf"} {
			if _, err := os.Stat(filepath.Join(b.Node(n).DataDir, f)); !os.IsNotExist(err) {
				t.Errorf("%s: %s exists in the data directory, where the server does not read it (%v)", n, f, err)
			}
		}
	}
}

// checkNamesIPv6 checks a names-ipv6 bed after the start: the main
// standby streams from the primary's replication_host ::1, through sdr's
// ::1/128 lines (the primary has no ::1 line of its own), with a pgpass
// entry in the escaped IPv6 form.
func checkNamesIPv6(t *testing.T, b *bed.Bed) {
	t.Helper()
	if got := sql(t, b, bed.DC2A, "SELECT sender_host FROM pg_stat_wal_receiver"); got != "::1" {
		t.Errorf("dc2-a streams from sender_host %q, want ::1 (dc1-a's replication_host)", got)
	}
	rules := sql(t, b, bed.DC1A, "SELECT coalesce(string_agg(array_to_string(user_name, ','), ' '), '') FROM pg_hba_file_rules WHERE address = '::1'")
	if rules != b.ReplicationUser+" "+b.ReplicationUser {
		t.Errorf("dc1-a's pg_hba.conf rules for ::1 are for users %q, want only sdr's two lines for %s", rules, b.ReplicationUser)
	}
	pgpass, err := os.ReadFile(b.Node(bed.DC2A).DataDir + ".sdr/pgpass")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(pgpass), `\:\:1:`) {
		t.Errorf("pgpass does not start with the escaped IPv6 host: %q", strings.SplitN(string(pgpass), ":"+b.ReplicationUser+":", 2)[0])
	}
}
