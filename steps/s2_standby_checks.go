package steps

import (
	"context"
	"errors"
	"fmt"
	"path"
	"sort"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/pgsdr/sdr/cluster"
)

// Checks of 2_check_cluster on the standby side that must pass before
// 5_stop_cluster stops anything: the rebuild must be known to be possible.
//
//   - A real replication connection (replication=true, IDENTIFY_SYSTEM)
//     from the main standby to the primary, with the replication user and
//     password: a reject line or a missing line for "replication" in the
//     primary's pg_hba.conf, or a wrong password, shows here.
//   - replication.user is not a superuser.
//   - The pair's slot exists on the primary, is physical and permanent,
//     and has not lost WAL (wal_status is not "lost").
//   - Disk: every database counts (pg_tablespace_size, which the
//     replication user may run for its database's tablespace), plus room
//     for pg_wal, on every standby node; nodes that share a filesystem
//     need the sum. The old data directory stays until 9_finish, so the
//     new copy needs its full size free.

// primaryReadiness is what the main standby learns of the primary beyond
// remoteFacts.
type primaryReadiness struct {
	ReplSystemID string // from IDENTIFY_SYSTEM
	Super        bool   // replication.user is a superuser
	Slot         slotObs
	DataBytes    int64    // every tablespace the replication user can measure
	Unmeasured   []string // tablespaces whose size it cannot read
	WalBytes     int64    // max_wal_size + wal_keep_size of the primary
	// CompressMethods is what the primary's build can compress with
	// (serverCompressionSQL); read only when copy.compress is set.
	CompressMethods string
}

// slotObs is the pair's slot on the primary.
type slotObs struct {
	Exists    bool
	Type      string
	Temporary bool
	WalStatus string // "reserved", "extended", "unreserved", "lost", or "" (NULL)
	Active    bool
	// InvalidationReason is why the slot was invalidated ("wal_removed");
	// PostgreSQL 17 and later, "" before.
	InvalidationReason string
}

// lostWhy says why a slot lost WAL, for messages.
func (o slotObs) lostWhy() string {
	if o.InvalidationReason != "" {
		return "wal_status lost, invalidation_reason " + o.InvalidationReason
	}
	return "wal_status lost"
}

const readinessSQL = `SELECT r.rolsuper,
	coalesce((SELECT sum(pg_tablespace_size(t.oid)) FROM pg_tablespace t
		WHERE t.spcname <> 'pg_global' AND (t.oid = d.dattablespace OR has_tablespace_privilege(t.oid, 'CREATE'))), 0)::bigint,
	coalesce((SELECT array_agg(t.spcname::text ORDER BY t.spcname) FROM pg_tablespace t
		WHERE t.spcname <> 'pg_global' AND NOT (t.oid = d.dattablespace OR has_tablespace_privilege(t.oid, 'CREATE'))), '{}'),
	(pg_size_bytes(current_setting('max_wal_size')) + pg_size_bytes(current_setting('wal_keep_size')))::bigint
	FROM pg_roles r, pg_database d WHERE r.rolname = current_user AND d.datname = current_database()`

// primaryReady checks the remote primary p from the main standby: the
// replication connection and what the replication user can read.
func (e *Env) primaryReady(ctx context.Context, p remoteFacts) (primaryReadiness, error) {
	main, _ := e.mainStandby()
	via, err := e.access(ctx, main)
	if err != nil {
		return primaryReadiness{}, err
	}
	cctx, cancel := e.cmdCtx(ctx)
	defer cancel()
	var r primaryReadiness
	rc, err := cluster.ConnectReplication(cctx, e.Config, via, p.Node.ReplHost(), p.Node.PGPort, e.Password)
	if err != nil {
		return r, fmt.Errorf("primary %s: %w", p.Node.Name, err)
	}
	results, err := rc.Exec(cctx, "IDENTIFY_SYSTEM").ReadAll()
	rc.Close(context.WithoutCancel(ctx))
	if err != nil {
		return r, fmt.Errorf("while running IDENTIFY_SYSTEM on %s as %s: %w", p.Node.Name, e.Config.Replication.User, err)
	}
	if len(results) != 1 || len(results[0].Rows) != 1 || len(results[0].Rows[0]) < 1 {
		return r, fmt.Errorf("IDENTIFY_SYSTEM on %s returned no row", p.Node.Name)
	}
	r.ReplSystemID = string(results[0].Rows[0][0])

	// The rest over the replication user's SQL session (kept for the run).
	var queryErr error
	err = e.withReplUser(cctx, via, p.Node, func(ctx context.Context, c *pgx.Conn) error {
		queryErr = e.readiness(ctx, c, p, &r)
		return queryErr
	})
	if err != nil && err != queryErr {
		return r, fmt.Errorf("primary-cluster node %s: %w", p.Node.Name, err)
	}
	return r, err
}

// readiness reads, on the primary p as the replication user, the sizes
// the copy needs room for, the compression methods and the pair's slot.
func (e *Env) readiness(ctx context.Context, c *pgx.Conn, p remoteFacts, r *primaryReadiness) error {
	if err := c.QueryRow(ctx, readinessSQL).Scan(&r.Super, &r.DataBytes, &r.Unmeasured, &r.WalBytes); err != nil {
		return fmt.Errorf("while reading sizes on %s as %s: %w", p.Node.Name, e.Config.Replication.User, err)
	}
	if e.Config.Copy.Compress != "" {
		if err := c.QueryRow(ctx, serverCompressionSQL).Scan(&r.CompressMethods); err != nil {
			return fmt.Errorf("while reading which compression methods %s supports: %w", p.Node.Name, err)
		}
	}
	err := c.QueryRow(ctx, features(versionOf(c)).slotSQL(), e.slotName()).Scan(&r.Slot.Type, &r.Slot.Temporary, &r.Slot.WalStatus,
		&r.Slot.Active, &r.Slot.InvalidationReason)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		r.Slot = slotObs{}
	case err != nil:
		return fmt.Errorf("while looking for slot %s on %s: %w", e.slotName(), p.Node.Name, err)
	default:
		r.Slot.Exists = true
	}
	return nil
}

// checkPrimaryReady runs the readiness checks against the primary p.
func (e *Env) checkPrimaryReady(ctx context.Context, p remoteFacts) (primaryReadiness, error) {
	r, err := e.primaryReady(ctx, p)
	if err != nil {
		return r, err
	}
	return r, decidePrimaryReady(p.Node.Name, e.slotName(), e.Config.Replication.User, p.SystemID, r)
}

// explainPrimaryNotReady adds what to do to the error of a wait for the
// primary that ended without success.
func explainPrimaryNotReady(err error, user, main string) error {
	switch {
	case errors.Is(err, cluster.ErrPasswordAuth):
		return fmt.Errorf("%w (check replication.password_* against the primary side)", err)
	case errors.Is(err, cluster.ErrLoginRefused):
		return fmt.Errorf("%w (the primary refuses %s from %s: the primary side creates the role in step 3 and sdr's pg_hba.conf block "+
			"in step 5; if it has, a pg_hba.conf line before sdr's block rejects or does not match this connection: "+
			"sdr stopped nothing)", err, user, main)
	}
	return err
}

// decidePrimaryReady decides whether the primary is ready for a rebuild.
// A missing slot is worth waiting for (the primary side creates it in
// 4_retain_wal); the rest is not.
func decidePrimaryReady(primary, slot, user string, sysID string, r primaryReadiness) error {
	switch {
	case r.ReplSystemID != sysID:
		return permanent(fmt.Errorf("IDENTIFY_SYSTEM on %s gives system identifier %s, SQL gives %s: not the same server", primary, r.ReplSystemID, sysID))
	case r.Super:
		return permanent(fmt.Errorf("replication.user %s is a superuser on the primary %s: the standby cluster must stream as a role "+
			"with LOGIN REPLICATION and nothing more (see the primary side's step 2)", user, primary))
	case !r.Slot.Exists:
		return fmt.Errorf("slot %s does not exist on the primary %s yet (the primary side creates it in 4_retain_wal)", slot, primary)
	case r.Slot.Type != "physical" || r.Slot.Temporary:
		return permanent(fmt.Errorf("slot %s on the primary %s is a %s slot (temporary %t), not sdr's permanent physical slot; "+
			"drop it on the primary, then run the primary side with --restart", slot, primary, r.Slot.Type, r.Slot.Temporary))
	case r.Slot.WalStatus == "lost":
		return permanent(fmt.Errorf("slot %s on the primary %s has lost WAL (%s; max_slot_wal_keep_size): a copy made through it "+
			"could not stream. On the primary side run start --role primary --restart: its 4_retain_wal drops and recreates a lost slot",
			slot, primary, r.Slot.lostWhy()))
	}
	return nil
}

// diskObs is the free space beside a standby node's data directory.
type diskObs struct {
	Node       string
	Host       string
	Filesystem string // df's first column
	Mount      string // df's last column
	Free       int64
}

// binAndDisk reads, in one remote action, the major version of n's
// PostgreSQL binaries (postgres --version) and the free space in the
// directory that holds its data directory (df -Pk).
func (e *Env) binAndDisk(ctx context.Context, n *cluster.Node) (int, diskObs, error) {
	script := fmt.Sprintf(`sdr_v=$(LANG=C LC_ALL=C %s --version 2>&1); sdr_vrc=$?
sdr_d=$(LANG=C LC_ALL=C df -Pk %s 2>&1); sdr_drc=$?
printf 'vrc=%%s\0v=%%s\0drc=%%s\0d=%%s\0' "$sdr_vrc" "$sdr_v" "$sdr_drc" "$sdr_d"
`, bin(n, "postgres"), q(path.Dir(n.DataDir)))
	out, err := e.run(ctx, n, cluster.ReadOnlyScript(script), cluster.RunOpts{})
	if err != nil {
		return 0, diskObs{}, fmt.Errorf("while checking the PostgreSQL binaries in %s and the free disk space beside %s: %w", n.BinDir, n.DataDir, err)
	}
	major, disk, err := parseBinAndDisk(out)
	if err != nil {
		return 0, diskObs{}, fmt.Errorf("on %s: %w", n.Name, err)
	}
	disk.Node, disk.Host = n.Name, n.Host
	return major, disk, nil
}

// parseBinAndDisk reads binAndDisk's records: postgres --version's exit
// code and output, then df's.
func parseBinAndDisk(out string) (int, diskObs, error) {
	rec := map[string]string{}
	for _, r := range strings.Split(out, "\x00") {
		if k, v, ok := strings.Cut(r, "="); ok {
			rec[k] = v
		}
	}
	if _, ok := rec["drc"]; !ok {
		return 0, diskObs{}, fmt.Errorf("the probe of the binaries and the disk printed %q", strings.TrimSpace(out))
	}
	if rc := rec["vrc"]; rc != "0" {
		err := fmt.Errorf("postgres --version exited with code %s: %s", rc, strings.TrimSpace(rec["v"]))
		if rc == "126" || rc == "127" {
			// Not there, or not executable: bin_dir is wrong, or the
			// binaries are not installed. A rerun cannot get past it.
			return 0, diskObs{}, permanent(fmt.Errorf("%w: check bin_dir in the config, or install PostgreSQL's server binaries", err))
		}
		return 0, diskObs{}, err
	}
	m := versionRE.FindStringSubmatch(rec["v"])
	if m == nil {
		return 0, diskObs{}, fmt.Errorf("cannot read a version from %q", strings.TrimSpace(rec["v"]))
	}
	major, _ := strconv.Atoi(m[1])
	if rc := rec["drc"]; rc != "0" {
		return 0, diskObs{}, fmt.Errorf("df -Pk exited with code %s: %s", rc, strings.TrimSpace(rec["d"]))
	}
	disk, err := parseDF(rec["d"])
	return major, disk, err
}

// parseDF reads the last line of `df -Pk DIR`.
func parseDF(out string) (diskObs, error) {
	lines := strings.Split(strings.TrimSpace(out), "\n")
	f := strings.Fields(lines[len(lines)-1])
	if len(lines) < 2 || len(f) < 6 {
		return diskObs{}, fmt.Errorf("cannot read df output %q", strings.TrimSpace(out))
	}
	kb, err := strconv.ParseInt(f[3], 10, 64)
	if err != nil {
		return diskObs{}, fmt.Errorf("cannot read df output %q: %w", strings.TrimSpace(out), err)
	}
	return diskObs{Filesystem: f[0], Mount: strings.Join(f[5:], " "), Free: kb * 1024}, nil
}

// checkDiskRoom checks that every filesystem holding standby data
// directories has room for a full new copy of each of them: the
// primary's data plus pg_wal, while the old directories stay until
// 9_finish. Nodes on one host whose directories are on the same
// filesystem share its free space.
func checkDiskRoom(disks []diskObs, perCopy int64) error {
	type group struct {
		free  int64
		nodes []string
	}
	groups := map[string]*group{}
	var keys []string
	for _, d := range disks {
		k := strings.ToLower(d.Host) + "\x00" + d.Filesystem + "\x00" + d.Mount
		g, ok := groups[k]
		if !ok {
			g = &group{free: d.Free}
			groups[k] = g
			keys = append(keys, k)
		}
		g.nodes = append(g.nodes, d.Node)
	}
	sort.Strings(keys)
	var problems []string
	for _, k := range keys {
		g := groups[k]
		need := perCopy * int64(len(g.nodes))
		if g.free < need {
			share := ""
			if len(g.nodes) > 1 {
				share = fmt.Sprintf(" (shared by %s: %d copies)", strings.Join(g.nodes, ", "), len(g.nodes))
			}
			problems = append(problems, fmt.Sprintf("%s has %d MiB free beside its data directory%s, a new copy needs %d MiB",
				g.nodes[0], g.free>>20, share, need>>20))
		}
	}
	if len(problems) > 0 {
		return permanent(fmt.Errorf("%s (the primary's databases plus room for pg_wal; the old data directory stays until 9_finish)",
			strings.Join(problems, "; ")))
	}
	return nil
}

// fanOutTools are the programs the fan-out copy runs on every DR node:
// tar, and the decompressor of copy.compress's method. None when the
// fan-out is off.
func fanOutTools(o cluster.CopyOptions) []string {
	if !o.FanOut {
		return nil
	}
	tools := []string{"tar"}
	if method, _, ok := o.CompressMethod(); ok {
		tools = append(tools, decompressor(method))
	}
	return tools
}

// missingTools returns those of tools that n's ssh_user cannot run.
func (e *Env) missingTools(ctx context.Context, n *cluster.Node, tools []string) ([]string, error) {
	var b strings.Builder
	for _, t := range tools {
		fmt.Fprintf(&b, "command -v %s >/dev/null 2>&1 || echo %s; ", q(t), q(t))
	}
	// It only looks, so plan runs it too.
	out, err := e.run(ctx, n, cluster.ReadOnlyScript(b.String()), cluster.RunOpts{})
	if err != nil {
		return nil, fmt.Errorf("while looking for %s on %s: %w", strings.Join(tools, ", "), n.Name, err)
	}
	return strings.Fields(out), nil
}
