package steps

import (
	"fmt"
	"sort"
	"strings"

	"github.com/pgsdr/sdr/cluster"
)

// Decisions of the stop workflow, made from observed state without I/O.

// keptAfterStop are the settings of sdr's postgresql.auto.conf block on a
// DR node that stay after stop: the node's own port, socket directory and
// cluster_name (pg_basebackup copied the upstream's, so without them the
// node would start with its upstream's), hot_standby, which keeps the copy
// readable, and recovery_target_timeline = 'latest', which is the default
// anyway: PostgreSQL asks for a restart when a setting that only a restart
// can change leaves the file, whatever its value, and stop does not
// restart a node for nothing. The rest of the block goes: primary_conninfo,
// primary_slot_name and hot_standby_feedback, which take effect on a
// reload. standby.signal stays, so the node stays in recovery with no
// upstream: an independent read-only copy.
var keptAfterStop = map[string]bool{"port": true, "unix_socket_directories": true, "cluster_name": true, "hot_standby": true,
	"recovery_target_timeline": true}

// settingName returns the parameter a postgresql.conf line sets, in lower
// case, or "" for a blank or comment line.
func settingName(line string) string {
	l := strings.TrimSpace(line)
	if l == "" || strings.HasPrefix(l, "#") {
		return ""
	}
	if end := strings.IndexAny(l, " \t="); end >= 0 {
		l = l[:end]
	}
	return strings.ToLower(l)
}

// detachBlock splits the lines of sdr's block in a DR node's
// postgresql.auto.conf into those that stay after stop, and the names of
// the settings that go.
func detachBlock(lines []string) (keep, gone []string) {
	for _, l := range lines {
		switch name := settingName(l); {
		case keptAfterStop[name]:
			keep = append(keep, l)
		case name != "":
			gone = append(gone, name)
		}
	}
	return keep, gone
}

// detachAutoConf returns a DR node's postgresql.auto.conf content with
// sdr's block holding only the lines that stay (no block when none
// stays), and the settings it took out. It also takes out the lines
// outside every sdr block that own recognises as this pair's (flattened:
// ALTER SYSTEM rewrites the file without sdr's markers), and returns them
// as they were. Stop never touches any other line it did not write.
func detachAutoConf(content, marker string, own sdrOwn) (updated string, gone, flattened []string) {
	updated = content
	if lines, ok := cluster.BlockLines(content, marker); ok {
		var keep []string
		keep, gone = detachBlock(lines)
		if len(keep) == 0 {
			keep = nil // no empty block
		}
		updated = cluster.ReplaceBlock(content, marker, keep)
	}
	updated, flattened = cluster.RemoveOutside(updated, func(l string) bool {
		name, v, ok := confSetting(l)
		return ok && own.detached(name, v)
	})
	return updated, gone, flattened
}

// sdrOwn recognises the values only sdr writes for a pair: the
// application names in primary_conninfo and the slot names of its nodes
// (cluster.AppName and cluster.SlotName, the same names).
type sdrOwn map[string]bool

// ownNames are the names sdr gives the pair's nodes, in every cluster.
func ownNames(cfg *cluster.Config) sdrOwn {
	own := sdrOwn{}
	for _, c := range []*cluster.ClusterSpec{&cfg.Primary, &cfg.Standby} {
		for _, n := range c.Nodes {
			own[cluster.AppName(cfg.Name, n.Name)] = true
			own[cluster.SlotName(cfg.Name, n.Name)] = true
		}
	}
	return own
}

// detached reports whether a setting outside sdr's block is one of sdr's
// own lines that stop takes off a DR node: a primary_conninfo with one of
// the pair's application names, or a primary_slot_name that is one of its
// slots.
func (o sdrOwn) detached(name, value string) bool {
	switch name {
	case "primary_conninfo":
		return o[conninfoValue(value, "application_name")]
	case "primary_slot_name":
		return o[value]
	}
	return false
}

// settingNames returns the names of the settings postgresql.conf-style
// lines set, in order.
func settingNames(lines []string) []string {
	var out []string
	for _, l := range lines {
		if n := settingName(l); n != "" {
			out = append(out, n)
		}
	}
	return out
}

// confSets reports whether postgresql.conf-style content sets name on a
// line of its own (outside or inside any block).
func confSets(content, name string) bool {
	for _, l := range strings.Split(content, "\n") {
		if settingName(l) == name {
			return true
		}
	}
	return false
}

// detachObs is what a running DR node shows after stop edited its files
// and it reloaded.
type detachObs struct {
	Node string
	// ConninfoSet: primary_conninfo is not empty; ConninfoFile is the
	// file pg_settings says it comes from ("" when none).
	ConninfoSet  bool
	ConninfoFile string
	// AutoConfSets: the node's edited postgresql.auto.conf still sets
	// primary_conninfo outside sdr's block (ALTER SYSTEM by someone).
	AutoConfSets   bool
	PendingRestart []string // replication settings waiting for a restart
	Receiver       bool     // a WAL receiver runs
	HBAErrors      []string // pg_hba_file_rules errors
}

// detachState is where a running DR node is in 3_detach.
type detachState int

const (
	detachWait    detachState = iota // the reload has not taken effect yet
	detachRestart                    // a replication setting needs a restart
	detachDone                       // no upstream, no WAL receiver
)

// detachSettings are the settings stop takes off a DR node. They take
// effect on a reload since PostgreSQL 13; should one wait for a restart
// all the same, stop restarts the node.
var detachSettings = []string{"primary_conninfo", "primary_slot_name", "hot_standby_feedback"}

// decideDetach decides whether a DR node has let go of its upstream, or
// refuses when something outside sdr's lines keeps it streaming.
func decideDetach(o detachObs) (detachState, error) {
	if len(o.HBAErrors) > 0 {
		return detachWait, permanent(fmt.Errorf("pg_hba.conf on %s has errors, PostgreSQL keeps the old rules: %s", o.Node, strings.Join(o.HBAErrors, "; ")))
	}
	if o.ConninfoSet {
		fromAuto := o.ConninfoFile == "postgresql.auto.conf" || strings.HasSuffix(o.ConninfoFile, "/postgresql.auto.conf")
		switch {
		case o.ConninfoFile == "":
			return detachWait, permanent(fmt.Errorf("%s still has primary_conninfo, set outside any configuration file "+
				"(on the postgres command line?), which sdr did not write: remove it there, then rerun", o.Node))
		case !fromAuto:
			return detachWait, permanent(fmt.Errorf("%s still has primary_conninfo, set in %s, which sdr did not write: "+
				"remove it there (the node keeps streaming otherwise), then rerun", o.Node, o.ConninfoFile))
		case o.AutoConfSets:
			return detachWait, permanent(fmt.Errorf("%s still has primary_conninfo in postgresql.auto.conf outside sdr's block "+
				"(ALTER SYSTEM by someone): ALTER SYSTEM RESET primary_conninfo on it if it must not stream, then rerun", o.Node))
		}
		return detachWait, nil
	}
	if len(o.PendingRestart) > 0 {
		return detachRestart, nil
	}
	if o.Receiver {
		return detachWait, nil
	}
	return detachDone, nil
}

// slotRow is one replication slot as pg_replication_slots shows it.
type slotRow struct {
	Name   string
	Exists bool
	Active bool
	PID    int // active_pid, 0 when none
}

// slotRelease is the next action on a slot that stop drops.
type slotRelease int

const (
	slotGone      slotRelease = iota // nothing to do
	slotTerminate                    // end the process that holds it, then look again
	slotDropNow                      // drop it
	slotWaitFree                     // held, but no process is named yet: look again
)

// decideSlotRelease decides the next action on a slot that stop drops:
// a slot held by a walsender (the DR stream) is freed by ending that
// walsender first.
func decideSlotRelease(o slotRow) slotRelease {
	switch {
	case !o.Exists:
		return slotGone
	case o.Active && o.PID > 0:
		return slotTerminate
	case o.Active:
		return slotWaitFree
	}
	return slotDropNow
}

// cascadeSlotNames are the slots sdr creates on the main standby, one per
// cascade. The DR side of stop drops only these: the main standby's own
// slot name belongs on the primary, and stop on the DR side never drops
// it, even on a DR node that is in truth the primary under another name.
func cascadeSlotNames(cfg *cluster.Config) []string {
	var out []string
	for _, n := range cfg.Standby.Nodes {
		if n.Name != cfg.Standby.Main {
			out = append(out, cluster.SlotName(cfg.Name, n.Name))
		}
	}
	return out
}

// drPrimaryProblem refuses stop --role standby on a DR node that runs as
// a primary (not in recovery): the DR side's nodes are standbys, so either
// the config's primary: names the wrong cluster (the roles moved and the
// config was not changed), and 3_detach would take sdr's pg_hba.conf block
// off the live primary, or the node was promoted outside sdr.
func drPrimaryProblem(o DirObs) error {
	if !o.Running || o.InRecovery {
		return nil
	}
	return permanent(fmt.Errorf("%s runs as a primary (not in recovery), and stop --role standby takes apart the DR side, whose nodes are "+
		"standbys. If a switchover or failover made this cluster the primary, set primary: in the config to it and run stop --role primary "+
		"with this state file; if the node was promoted outside sdr, sdr's stop of the DR side does not apply to it. Nothing was changed", o.Node))
}

// inClusterSlotNames are the names sdr gives the primary cluster's own
// nodes' slots: it made such a slot for a cascade while that cluster was
// the DR side, on its main standby, which a switchover or failover has
// since made the primary.
func inClusterSlotNames(cfg *cluster.Config) []string {
	var out []string
	for _, n := range cfg.Primary.Nodes {
		out = append(out, cluster.SlotName(cfg.Name, n.Name))
	}
	return out
}

// inClusterSlotsProblem refuses stop --role primary while node holds a
// slot of this pair made for a primary-cluster node (inClusterSlotNames):
// that node is the primary cluster's own standby now, and streams, or will
// when it runs, through the slot. 4_drop_slots would drop it and end its
// walsender, and 3_close_access would take away the pg_hba.conf lines it
// may come in by: the primary cluster would lose its standby.
func inClusterSlotsProblem(cfg *cluster.Config, node string, slots []slotRow) error {
	if len(slots) == 0 {
		return nil
	}
	owner := map[string]string{}
	for _, n := range cfg.Primary.Nodes {
		owner[cluster.SlotName(cfg.Name, n.Name)] = n.Name
	}
	var held []string
	for _, sl := range slots {
		use := "not in use now"
		if sl.Active {
			use = fmt.Sprintf("in use by walsender %d", sl.PID)
		}
		held = append(held, fmt.Sprintf("%s for %s (%s)", sl.Name, owner[sl.Name], use))
	}
	return permanent(fmt.Errorf("%s holds this pair's slot %s: sdr made it for a cascade while cluster %s was the DR side, and that node is "+
		"this cluster's own standby now; stop would drop the slot, end its stream and remove the pg_hba.conf lines it may come in by. "+
		"Point that standby at a slot, and if need be a role and pg_hba.conf line, of this cluster's own (ALTER SYSTEM SET primary_slot_name "+
		"and primary_conninfo on it, then pg_reload_conf()), drop sdr's slot once it is no longer in use (SELECT pg_drop_replication_slot(...)), "+
		"then rerun. Nothing was changed", node, strings.Join(held, ", "), cfg.PrimaryCluster))
}

// stoppedSlotsProblem refuses a DR node that is not running and still
// holds this pair's slots on disk (pg_replslot): a slot is dropped over
// SQL, and one left behind would keep WAL on that node forever once it
// runs again.
func stoppedSlotsProblem(node string, slots []string) error {
	if len(slots) == 0 {
		return nil
	}
	return fmt.Errorf("%s is not running and holds slot(s) %s of this pair in pg_replslot: sdr drops slots over SQL; "+
		"start %s (after 3_detach it comes up as a read-only standby without upstream), then rerun",
		node, strings.Join(slots, ", "), node)
}

// roleDrop is what 6_drop_role does with replication.user.
type roleDrop struct {
	Drop bool
	Why  string
}

// decideDropRole decides whether stop drops replication.user. By default
// it stays (other things may log in with it). With --drop-role it is
// dropped only when sdr created it for this pair (its comment), and not
// while sessions of it are open (another pair may stream with it).
func decideDropRole(user, pair string, o roleObs, asked bool, sessions int) (roleDrop, error) {
	switch {
	case !o.Exists:
		return roleDrop{Why: fmt.Sprintf("replication.user %s does not exist on the primary", user)}, nil
	case !asked:
		return roleDrop{Why: fmt.Sprintf("replication.user %s stays: other things may use it (sdr stop --drop-role drops it when sdr created it for this pair)", user)}, nil
	case o.Comment == roleComment(pair):
	case strings.HasPrefix(o.Comment, roleCommentPrefix):
		return roleDrop{}, permanent(fmt.Errorf("--drop-role: replication.user %s was created by sdr for DR pair %q, not %q, whose standbys may still log in with it: "+
			"sdr does not drop it; rerun without --drop-role (with --restart if this stop already ran)", user, strings.TrimPrefix(o.Comment, roleCommentPrefix), pair))
	default:
		return roleDrop{}, permanent(fmt.Errorf("--drop-role: replication.user %s was not created by sdr (no comment %q on it): "+
			"sdr drops only a role it created for this pair; drop it yourself, or rerun without --drop-role (with --restart if this stop already ran)",
			user, roleComment(pair)))
	}
	if sessions > 0 {
		return roleDrop{}, fmt.Errorf("--drop-role: %d session(s) of replication.user %s are open on the primary (see pg_stat_activity): "+
			"another DR pair or client may use it; sdr does not drop a role in use. End them or rerun without --drop-role", sessions, user)
	}
	return roleDrop{Drop: true, Why: fmt.Sprintf("replication.user %s was created by sdr for this pair and --drop-role was given", user)}, nil
}

// primaryLeft is what 7_finish finds of the pair on a primary-cluster node.
type primaryLeft struct {
	Node     string
	Slots    []string // this pair's slots that exist
	HBAFile  string
	HBABlock bool // sdr's block is still in the live hba_file
}

// drLeft is what 7_finish finds of the pair on a DR node.
type drLeft struct {
	Node       string
	Running    bool
	InRecovery bool
	Receiver   bool     // a WAL receiver runs
	Conninfo   bool     // primary_conninfo is set
	Settings   []string // replication settings still in sdr's postgresql.auto.conf block
	HBAFile    string   // the pg_hba.conf the node's server reads
	HBABlock   bool     // sdr's block is still in it
	Files      []string // sdr's files that still exist (password file, prepared settings)
	Slots      []string // this pair's slots that exist
}

// stopLeftovers lists, one line per finding, what is left of the pair
// after stop (nothing when the stop is complete). A DR node that runs as
// a primary is not a leftover (stop never demotes), nor one that is not
// running (it starts as a standby without upstream).
func stopLeftovers(prim []primaryLeft, dr []drLeft) []string {
	var out []string
	for _, p := range prim {
		if len(p.Slots) > 0 {
			out = append(out, fmt.Sprintf("%s still has slot(s) %s", p.Node, strings.Join(p.Slots, ", ")))
		}
		if p.HBABlock {
			out = append(out, fmt.Sprintf("%s still has sdr's block in %s", p.Node, p.HBAFile))
		}
	}
	for _, d := range dr {
		if len(d.Settings) > 0 {
			out = append(out, fmt.Sprintf("%s still has %s in sdr's block of postgresql.auto.conf", d.Node, strings.Join(d.Settings, ", ")))
		}
		if d.HBABlock {
			out = append(out, fmt.Sprintf("%s still has sdr's block in %s", d.Node, d.HBAFile))
		}
		for _, f := range d.Files {
			out = append(out, fmt.Sprintf("%s still has %s", d.Node, f))
		}
		if len(d.Slots) > 0 {
			out = append(out, fmt.Sprintf("%s still has slot(s) %s", d.Node, strings.Join(d.Slots, ", ")))
		}
		if d.Running && (d.Receiver || d.Conninfo) {
			out = append(out, fmt.Sprintf("%s still has an upstream (primary_conninfo set or a WAL receiver running)", d.Node))
		}
	}
	sort.Strings(out)
	return out
}

// drEndState says, for the log, what a DR node is after stop.
func drEndState(d drLeft) string {
	switch {
	case !d.Running:
		return "not running: it starts as a read-only standby without upstream"
	case d.InRecovery:
		return "a read-only standby without upstream"
	}
	return "runs as a primary (sdr stop never promotes or demotes)"
}

// sameAsPrimaryNode refuses a DR node whose data directory is provably a
// primary-cluster node's (same machine, same directory): stop must not
// edit it as a DR node.
func sameAsPrimaryNode(o DirObs, primaries []DirIdentity) error {
	for _, pn := range primaries {
		if o.Exists && o.Identity.same(pn) {
			return permanent(fmt.Errorf("DR node %s: data directory %s is the data directory of primary-cluster node %s (same machine, same directory): "+
				"sdr stop --role standby does not touch it; check the host and data_dir of %s in the config", o.Node, o.Path, pn.Node, o.Node))
		}
	}
	return nil
}
