package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgsdr/sdr/cluster"
	"github.com/pgsdr/sdr/e2e/bed"
	"github.com/pgsdr/sdr/steps"
)

// The floor is the manual procedure that sdr's standby start automates,
// scripted with PostgreSQL's own tools and nothing else. It runs in a
// child process of the benchmark (this program, "floor-child") as the
// postgres OS user, so that it can use peer authentication on the nodes'
// sockets and needs neither runuser nor a shell per command.

// floorNode is one DR node as the floor procedure sees it.
type floorNode struct {
	Name      string `json:"name"`
	Port      int    `json:"port"`
	DataDir   string `json:"data_dir"`
	OldDir    string `json:"old_dir"` // where the previous data directory is moved
	SocketDir string `json:"socket_dir"`
	LogFile   string `json:"log_file"`
	AppName   string `json:"app_name"`
}

// floorSpec is what the parent hands the child on standard input.
type floorSpec struct {
	BinDir  string    `json:"bin_dir"`
	Primary floorNode `json:"primary"` // only Port and SocketDir are used
	// PrimaryHost is the primary's address for replication (the link's
	// relay with -link-rate); the main standby's is 127.0.0.1.
	PrimaryHost string    `json:"primary_host"`
	Main        floorNode `json:"main"`
	Cascade     floorNode `json:"cascade"`
	Slot        string    `json:"slot"`         // the main standby's slot on the primary
	CascadeSlot string    `json:"cascade_slot"` // the cascade's slot on the main standby, as sdr names it
	User        string    `json:"user"`         // replication user
	PassFile    string    `json:"passfile"`     // its password, in libpq's passfile format
	Timeout     string    `json:"timeout"`
	// Compress is pg_basebackup's --compress for the main standby's copy
	// from the primary ("" for none), as sdr's copy.compress.
	Compress string `json:"compress"`
}

// floorPhase is one timed phase of the floor procedure.
type floorPhase struct {
	Name    string  `json:"name"`
	Seconds float64 `json:"s"`
}

// floorChild runs the floor procedure and prints its phases as JSON.
func floorChild() error {
	var spec floorSpec
	if err := json.NewDecoder(os.Stdin).Decode(&spec); err != nil {
		return fmt.Errorf("while reading the floor spec: %w", err)
	}
	timeout, err := time.ParseDuration(spec.Timeout)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var phases []floorPhase
	mark := time.Now()
	phase := func(name string, err error) error {
		now := time.Now()
		phases = append(phases, floorPhase{Name: name, Seconds: now.Sub(mark).Seconds()})
		mark = now
		if err != nil {
			return fmt.Errorf("floor phase %s: %w", name, err)
		}
		return nil
	}
	pgctl := filepath.Join(spec.BinDir, "pg_ctl")
	// 1. Stop both DR nodes.
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, n := range []floorNode{spec.Main, spec.Cascade} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = run(ctx, pgctl, "stop", "-D", n.DataDir, "-m", "fast", "-w", "-t", "600")
		}()
	}
	wg.Wait()
	if err := phase("stop DR nodes", errors.Join(errs...)); err != nil {
		return err
	}
	// 2. Main standby from the primary, through the slot.
	if err := phase("move main aside", os.Rename(spec.Main.DataDir, spec.Main.OldDir)); err != nil {
		return err
	}
	if err := phase("wait slot released", waitSlotInactive(ctx, spec.Primary, spec.Slot)); err != nil {
		return err
	}
	if err := phase("basebackup main", basebackup(ctx, spec, spec.Main, spec.Primary, spec.Slot, spec.Compress)); err != nil {
		return err
	}
	if err := phase("configure main", configureStandby(spec, spec.Main, spec.Primary, spec.Slot)); err != nil {
		return err
	}
	if err := phase("start main", run(ctx, pgctl, "start", "-D", spec.Main.DataDir, "-l", spec.Main.LogFile, "-w", "-t", "600")); err != nil {
		return err
	}
	if err := phase("wait main streams", waitStreaming(ctx, spec.Main)); err != nil {
		return err
	}
	// 3. The cascade from the main standby, through a slot of its own
	// there (as sdr does: the main standby keeps the WAL the cascade needs).
	if err := phase("move cascade aside", os.Rename(spec.Cascade.DataDir, spec.Cascade.OldDir)); err != nil {
		return err
	}
	if err := phase("create cascade slot", createSlot(ctx, spec.Main, spec.CascadeSlot)); err != nil {
		return err
	}
	if err := phase("basebackup cascade", basebackup(ctx, spec, spec.Cascade, spec.Main, spec.CascadeSlot, "")); err != nil {
		return err
	}
	if err := phase("configure cascade", configureStandby(spec, spec.Cascade, spec.Main, spec.CascadeSlot)); err != nil {
		return err
	}
	if err := phase("start cascade", run(ctx, pgctl, "start", "-D", spec.Cascade.DataDir, "-l", spec.Cascade.LogFile, "-w", "-t", "600")); err != nil {
		return err
	}
	if err := phase("wait cascade streams", waitStreaming(ctx, spec.Cascade)); err != nil {
		return err
	}
	return json.NewEncoder(os.Stdout).Encode(phases)
}

func run(ctx context.Context, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %w: %s", filepath.Base(name), strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return nil
}

func conninfo(spec floorSpec, up floorNode, app string) string {
	host := "127.0.0.1"
	if up.Name == spec.Primary.Name && spec.PrimaryHost != "" {
		host = spec.PrimaryHost
	}
	return fmt.Sprintf("host=%s port=%d user=%s passfile=%s application_name=%s", host, up.Port, spec.User, spec.PassFile, app)
}

func basebackup(ctx context.Context, spec floorSpec, n, up floorNode, slot, compress string) error {
	args := []string{"-D", n.DataDir, "-X", "stream", "-c", "fast", "-d", conninfo(spec, up, n.AppName+"_basebackup")}
	if slot != "" {
		args = append(args, "-S", slot)
	}
	if compress != "" {
		args = append(args, "--compress="+compress)
	}
	return run(ctx, filepath.Join(spec.BinDir, "pg_basebackup"), args...)
}

// configureStandby makes the copy in n.DataDir a standby of up with its
// own port, socket directory and name.
func configureStandby(spec floorSpec, n, up floorNode, slot string) error {
	lines := []string{
		"# floor procedure",
		fmt.Sprintf("port = %d", n.Port),
		fmt.Sprintf("unix_socket_directories = '%s'", n.SocketDir),
		fmt.Sprintf("cluster_name = '%s'", n.Name),
		fmt.Sprintf("primary_conninfo = '%s'", conninfo(spec, up, n.AppName)),
		fmt.Sprintf("primary_slot_name = '%s'", slot),
	}
	f, err := os.OpenFile(filepath.Join(n.DataDir, "postgresql.auto.conf"), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(strings.Join(lines, "\n") + "\n"); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(n.DataDir, "standby.signal"), nil, 0o600)
}

func connect(ctx context.Context, n floorNode) (*pgx.Conn, error) {
	return pgx.Connect(ctx, fmt.Sprintf("host=%s port=%d user=postgres dbname=postgres sslmode=disable", n.SocketDir, n.Port))
}

// floorPoll is how often the floor procedure checks a condition.
const floorPoll = 5 * time.Millisecond

func waitSlotInactive(ctx context.Context, p floorNode, slot string) error {
	c, err := connect(ctx, p)
	if err != nil {
		return err
	}
	defer c.Close(context.Background())
	for {
		var active bool
		if err := c.QueryRow(ctx, "SELECT active FROM pg_replication_slots WHERE slot_name = $1", slot).Scan(&active); err != nil {
			return fmt.Errorf("while looking for slot %s: %w", slot, err)
		}
		if !active {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(floorPoll):
		}
	}
}

// createSlot creates a permanent physical slot on n that reserves WAL at once.
func createSlot(ctx context.Context, n floorNode, slot string) error {
	c, err := connect(ctx, n)
	if err != nil {
		return err
	}
	defer c.Close(context.Background())
	_, err = c.Exec(ctx, "SELECT pg_create_physical_replication_slot($1, true)", slot)
	return err
}

// waitStreaming waits until n's WAL receiver streams. pg_ctl start -w has
// returned, so n accepts connections.
func waitStreaming(ctx context.Context, n floorNode) error {
	c, err := connect(ctx, n)
	if err != nil {
		return err
	}
	defer c.Close(context.Background())
	for {
		var status string
		if err := c.QueryRow(ctx, "SELECT coalesce((SELECT status FROM pg_stat_wal_receiver), 'none')").Scan(&status); err != nil {
			return err
		}
		if status == "streaming" {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: wal receiver %s: %w", n.Name, status, ctx.Err())
		case <-time.After(floorPoll):
		}
	}
}

// runFloor runs the floor procedure in a child process as postgres and
// returns its wall time, measured around the child like sdr's, and phases.
func (bm *bench) runFloor(ctx context.Context, compress string) (time.Duration, []floorPhase, error) {
	b := bm.bed
	node := func(name string) floorNode {
		n := b.Node(name)
		return floorNode{Name: name, Port: n.Port, DataDir: n.DataDir, OldDir: n.DataDir + ".floor-old", SocketDir: n.SocketDir,
			LogFile: n.LogFile, AppName: cluster.AppName(b.Name, name)}
	}
	spec := floorSpec{BinDir: bed.BinDir, Primary: node(bed.DC1A), Main: node(bed.DC2A), Cascade: node(bed.DC2B),
		Slot: cluster.SlotName(b.Name, bed.DC2A), CascadeSlot: cluster.SlotName(b.Name, bed.DC2B), User: b.ReplicationUser, PassFile: bm.floorPassFile, Timeout: bm.timeout.String(),
		Compress: compress}
	if bm.link != nil {
		spec.PrimaryHost = linkNSAddr
	}
	in, err := json.Marshal(spec)
	if err != nil {
		return 0, nil, err
	}
	uid, gid, err := postgresIDs()
	if err != nil {
		return 0, nil, err
	}
	cmd := exec.CommandContext(ctx, bm.floorBinary, "floor-child")
	cmd.Dir = b.Dir
	cmd.Env = []string{"PATH=" + bed.BinDir + ":/usr/bin:/bin", "HOME=/var/lib/postgresql", "LANG=C.UTF-8", "LC_ALL=C.UTF-8"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
	cmd.Stdin = bytes.NewReader(in)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err = cmd.Run()
	wall := time.Since(start)
	if err != nil {
		return wall, nil, fmt.Errorf("floor procedure: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	var phases []floorPhase
	if err := json.Unmarshal(stdout.Bytes(), &phases); err != nil {
		return wall, nil, fmt.Errorf("floor procedure output %q: %w", stdout.String(), err)
	}
	return wall, phases, bm.markFloorCopies()
}

// markFloorCopies writes, after the timed floor procedure, sdr's copy
// marker into the floor's two copies, as sdr writes into its own. sdr's
// next run replaces a standby of the primary without its marker only
// while it streams through sdr's slot, and 7_build_standby looks at the
// main standby again after 5_stop_cluster has stopped it: without the
// marker, sdr refuses the floor's copy there.
func (bm *bench) markFloorCopies() error {
	uid, gid, err := postgresIDs()
	if err != nil {
		return err
	}
	id := fmt.Sprintf("floor-%d", time.Now().UnixNano())
	from := ""
	for _, n := range []string{bed.DC2A, bed.DC2B} {
		m := floorMarker(bm.bed.Name, n, bm.systemID, id+"-"+n, from)
		from = id + "-" + n
		p := filepath.Join(bm.bed.Node(n).DataDir, floorMarkerName)
		if err := os.WriteFile(p, []byte(m), 0o600); err != nil {
			return err
		}
		if err := os.Chown(p, uid, gid); err != nil {
			return err
		}
	}
	return nil
}

// floorMarkerName and floorMarker are sdr's copy marker (steps.CopyMarker).
const floorMarkerName = "sdr_copy"

func floorMarker(pair, node, systemID, copyID, from string) string {
	return steps.CopyMarker{Pair: pair, Node: node, SystemID: systemID, CopyID: copyID, From: from}.String()
}

// writeFloorPassFile writes the replication password in libpq's passfile
// format to dir/pgpass, owned by postgres, mode 0600.
func writeFloorPassFile(dir, user, password string) (string, error) {
	uid, gid, err := postgresIDs()
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	if err := os.Chown(dir, uid, gid); err != nil {
		return "", err
	}
	esc := strings.NewReplacer(`\`, `\\`, `:`, `\:`)
	p := filepath.Join(dir, "pgpass")
	if err := os.WriteFile(p, []byte("*:*:*:"+esc.Replace(user)+":"+esc.Replace(password)+"\n"), 0o600); err != nil {
		return "", err
	}
	return p, os.Chown(p, uid, gid)
}

func postgresIDs() (int, int, error) {
	u, err := user.Lookup("postgres")
	if err != nil {
		return 0, 0, fmt.Errorf("OS user postgres: %w", err)
	}
	uid, err1 := strconv.Atoi(u.Uid)
	gid, err2 := strconv.Atoi(u.Gid)
	return uid, gid, errors.Join(err1, err2)
}
