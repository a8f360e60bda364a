package bed

import (
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// The Debian flavour: every node is a Debian cluster made with
// pg_createcluster, its configuration in /etc/postgresql/15/<cluster>
// (postgresql.conf with conf.d/, pg_hba.conf, pg_ident.conf, start.conf),
// its data directory under the bed, started and stopped with
// pg_ctlcluster. No systemd runs in the sandbox or in CI (PID 1 is not
// systemd), so pg_ctlcluster runs pg_ctl itself, as it does in a
// container. Debian's own cluster 15/main is never touched: the bed's
// clusters are named sdrbed<id>_<node>, and only those are removed.

// debianConfRoot holds Debian's PostgreSQL 15 cluster configurations.
const debianConfRoot = "/etc/postgresql/15"

// checkDebianTools fails unless Debian's cluster tools are installed.
func checkDebianTools() error {
	for _, p := range []string{"/usr/bin/pg_createcluster", "/usr/bin/pg_ctlcluster", "/usr/bin/pg_lsclusters"} {
		if !exists(p) {
			return fmt.Errorf("bed: the Debian flavour needs %s (package postgresql-common)", p)
		}
	}
	return nil
}

// clusterPrefix is the prefix of the Debian cluster names of the bed in
// dir: "sdrbed" and the letters and digits of the directory's name.
func clusterPrefix(dir string) string {
	name := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			return r
		}
		return -1
	}, strings.ToLower(strings.TrimPrefix(filepath.Base(dir), "sdr-bed-")))
	if !strings.HasPrefix(filepath.Base(dir), "sdr-bed-") {
		// A directory named by hand (/tmp/a/bed and /tmp/b/bed): the
		// whole path tells two beds apart, so that one's down does not
		// remove the other's clusters.
		name += fmt.Sprintf("%08x", crc32.ChecksumIEEE([]byte(filepath.Clean(dir))))
	}
	return "sdrbed" + name
}

// debianClusterName is node's Debian cluster name in the bed in dir.
func debianClusterName(dir, node string) string {
	return clusterPrefix(dir) + "_" + strings.ReplaceAll(node, "-", "_")
}

// runRoot runs a command as root (the caller) and returns its output.
func runRoot(ctx context.Context, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = "/"
	cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8", "LC_ALL=C.UTF-8"}
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, tail(string(out), 20))
	}
	return string(out), nil
}

// createDebianCluster makes node's cluster with pg_createcluster (initdb
// into its data directory, configuration into its ConfigDir) and adds the
// bed's settings in conf.d.
func (b *Bed) createDebianCluster(ctx context.Context, n *NodeInfo) error {
	b.logf("bed: pg_createcluster 15 %s (port %d)", n.Cluster, n.Port)
	if _, err := runRoot(ctx, "pg_createcluster", "--quiet", "15", n.Cluster,
		"-d", n.DataDir, "-p", strconv.Itoa(n.Port), "-s", n.SocketDir, "-l", n.LogFile, "--start-conf", "auto",
		"--", "--auth-local=peer", "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8"); err != nil {
		return err
	}
	conf := fmt.Sprintf(`# sdr-bed settings for %s
listen_addresses = '%s'
wal_keep_size = '256MB'
log_replication_commands = on
%s`, n.Name, b.listenAddresses(), b.extraSettings())
	p := filepath.Join(n.ConfigDir, "conf.d", "sdr-bed.conf")
	if err := os.WriteFile(p, []byte(conf), 0o644); err != nil {
		return err
	}
	if err := chownPostgres(p); err != nil {
		return err
	}
	return b.limitHBA(n)
}

// buildDebianDC makes primary a running Debian cluster and standby a
// Debian cluster streaming from it (created, then its data directory
// replaced by a pg_basebackup, as a Debian operator makes a standby).
func (b *Bed) buildDebianDC(ctx context.Context, primary, standby string) error {
	p, s := b.Nodes[primary], b.Nodes[standby]
	if err := b.createDebianCluster(ctx, p); err != nil {
		return err
	}
	if primary == DC2A {
		if err := appendFile(b.HBAFile(primary),
			"host    all             all             10.99.0.0/24            scram-sha-256 # custom-dc2\n"); err != nil {
			return err
		}
		if err := appendFile(b.IdentFile(primary),
			"custommap       root                    postgres # custom-dc2\n"); err != nil {
			return err
		}
	}
	if err := b.StartNode(ctx, primary); err != nil {
		return err
	}
	if err := b.createDebianCluster(ctx, s); err != nil {
		return err
	}
	if err := os.RemoveAll(s.DataDir); err != nil {
		return err
	}
	b.logf("bed: pg_basebackup %s from %s (port %d)", standby, primary, s.Port)
	if _, err := b.asPostgres(ctx, filepath.Join(BinDir, "pg_basebackup"),
		"-D", s.DataDir, "-h", p.SocketDir, "-p", strconv.Itoa(p.Port), "-U", "postgres",
		"-X", "stream", "-c", "fast", "--no-password"); err != nil {
		return err
	}
	conninfo := fmt.Sprintf("host=%s port=%d user=postgres application_name=%s", p.SocketDir, p.Port, standby)
	if err := appendFile(filepath.Join(s.DataDir, "postgresql.auto.conf"),
		fmt.Sprintf("primary_conninfo = '%s'\n", conninfo)); err != nil {
		return err
	}
	sig := filepath.Join(s.DataDir, "standby.signal")
	if err := os.WriteFile(sig, nil, 0o600); err != nil {
		return err
	}
	if err := chownPostgres(sig); err != nil {
		return err
	}
	if err := b.StartNode(ctx, standby); err != nil {
		return err
	}
	return b.WaitStreaming(ctx, primary, standby, time.Minute)
}

// LsClusters returns pg_lsclusters' line for node: version, cluster,
// port, status ("online,recovery"), owner, data directory, log file.
func (b *Bed) LsClusters(ctx context.Context, node string) ([]string, error) {
	n, err := b.node(node)
	if err != nil {
		return nil, err
	}
	if n.Cluster == "" {
		return nil, fmt.Errorf("bed: %s is not a Debian cluster", node)
	}
	out, err := runRoot(ctx, "pg_lsclusters", "--no-header", "15", n.Cluster)
	if err != nil {
		return nil, err
	}
	f := strings.Fields(out)
	if len(f) < 6 {
		return nil, fmt.Errorf("pg_lsclusters 15 %s: %q", n.Cluster, out)
	}
	return f, nil
}

// dropDebianClusters removes the Debian clusters of the bed in dir (by
// name: those of b, or every sdrbed<id>_* of dir): their configuration in
// /etc/postgresql/15 and their pid files in /var/run/postgresql. The
// servers must be stopped already; the data directories go with dir.
func dropDebianClusters(dir string, b *Bed) error {
	var names []string
	if b != nil {
		for _, n := range b.Nodes {
			if n.Cluster != "" {
				names = append(names, n.Cluster)
			}
		}
	}
	if m, _ := filepath.Glob(filepath.Join(debianConfRoot, clusterPrefix(dir)+"_*")); m != nil {
		for _, p := range m {
			names = append(names, filepath.Base(p))
		}
	}
	prefix := clusterPrefix(dir) + "_"
	var errs []error
	for _, name := range names {
		if !strings.HasPrefix(name, prefix) || name == "main" {
			errs = append(errs, fmt.Errorf("bed: not removing cluster %q: not one of the bed in %s", name, dir))
			continue
		}
		for _, p := range []string{filepath.Join(debianConfRoot, name), "/var/run/postgresql/15-" + name + ".pid",
			"/var/run/postgresql/15-" + name + ".pg_stat_tmp"} {
			if err := os.RemoveAll(p); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}
