package steps

import (
	"fmt"
	"sort"
	"strings"

	"github.com/pgsdr/sdr/cluster"
)

// Decisions made from observed state, without I/O. Each is table-tested.

// choosePrimary returns the index of the one node not in recovery, and
// checks that all nodes belong to one cluster.
func choosePrimary(facts []pgFacts) (int, error) {
	idx := -1
	var primaries []string
	for i, f := range facts {
		if !f.InRecovery {
			idx = i
			primaries = append(primaries, f.Node)
		}
	}
	switch len(primaries) {
	case 0:
		return -1, permanent(fmt.Errorf("no primary in the primary cluster: every node is in recovery (if a switchover or failover " +
			"made the other cluster the primary, set primary: in the config to it, on both sides)"))
	case 1:
	default:
		return -1, permanent(fmt.Errorf("%d primaries in the primary cluster (%s): exactly one node may be out of recovery",
			len(primaries), strings.Join(primaries, ", ")))
	}
	for _, f := range facts {
		if f.SystemID != facts[idx].SystemID {
			return -1, permanent(fmt.Errorf("%s has system identifier %s but the primary %s has %s: it is not a member of the primary cluster",
				f.Node, f.SystemID, facts[idx].Node, facts[idx].SystemID))
		}
	}
	return idx, nil
}

// Minimum free capacity on the primary for one DR standby: its
// basebackup with -X stream takes two walsenders and a temporary slot;
// streaming then takes one walsender and the permanent slot.
const (
	minFreeWalSenders = 2
	minFreeSlots      = 2
)

// checkPrimarySettings checks the primary's settings for streaming to DR.
// slotExists is true when sdr's slot already exists (a rerun), which
// then counts as capacity already reserved; so do the walsenders of the
// pair's own stream (f.PairWalSenders): the DR side stops its main standby
// before it copies.
func checkPrimarySettings(f pgFacts, slotExists bool) error {
	var problems []string
	if f.VersionNum < minMajor*10000 {
		problems = append(problems, fmt.Sprintf("server_version_num %d is older than PostgreSQL %d (sdr supports %d to %d; it needs wal_keep_size)",
			f.VersionNum, minMajor, minMajor, maxMajor))
	}
	if f.WalLevel != "replica" && f.WalLevel != "logical" {
		problems = append(problems, fmt.Sprintf("wal_level is %s, needs replica or logical", f.WalLevel))
	}
	if used := f.UsedWalSenders - f.PairWalSenders; f.MaxWalSenders-used < minFreeWalSenders {
		own := ""
		if f.PairWalSenders > 0 {
			own = " (not counting this pair's own stream, which the DR side's rebuild ends first)"
		}
		problems = append(problems, fmt.Sprintf("max_wal_senders %d with %d in use%s leaves %d free, needs %d",
			f.MaxWalSenders, used, own, f.MaxWalSenders-used, minFreeWalSenders))
	}
	need := minFreeSlots
	if slotExists {
		need--
	}
	if free := f.MaxSlots - f.UsedSlots; free < need {
		problems = append(problems, fmt.Sprintf("max_replication_slots %d with %d in use leaves %d free, needs %d",
			f.MaxSlots, f.UsedSlots, free, need))
	}
	if len(problems) > 0 {
		return permanent(fmt.Errorf("primary %s: %s", f.Node, strings.Join(problems, "; ")))
	}
	return nil
}

// hbaAddress is a pg_hba.conf address for host (cluster.HBAAddress).
func hbaAddress(host string) string { return cluster.HBAAddress(host) }

// hbaLines is sdr's pg_hba.conf block: replication (and the database used
// by the standby side's checks) for the replication user from each of
// the given nodes' hosts.
func hbaLines(cfg *cluster.Config, from []cluster.Node) []string {
	seen := map[string]bool{}
	var addrs []string
	for _, n := range from {
		a := hbaAddress(n.ReplHost())
		if !seen[a] {
			seen[a] = true
			addrs = append(addrs, a)
		}
	}
	sort.Strings(addrs)
	var lines []string
	for _, a := range addrs {
		lines = append(lines,
			fmt.Sprintf("host    replication     %s    %s    scram-sha-256", cfg.Replication.User, a),
			fmt.Sprintf("host    %s    %s    %s    scram-sha-256", cfg.Postgres.Database, cfg.Replication.User, a))
	}
	return lines
}

// upstream is where a standby node streams from.
type upstream struct {
	Node string
	Host string
	Port int
	Slot string // "" for none
}

// standbySettings are the lines sdr writes into a standby node's
// postgresql.auto.conf. pg_basebackup copied the upstream's port, socket
// directory and cluster_name, so they are set back to the node's own. A
// node whose postgresql.conf lives outside the data directory (config_dir)
// keeps its own cluster_name (Debian's "15/main"); its port and socket
// directory are set all the same, since the upstream's
// postgresql.auto.conf may hold them.
func standbySettings(cfg *cluster.Config, n *cluster.Node, up upstream, passfile string) []string {
	conninfo := strings.Join([]string{
		"host=" + conninfoQuote(cluster.ConninfoHost(up.Host)),
		fmt.Sprintf("port=%d", up.Port),
		"user=" + conninfoQuote(cfg.Replication.User),
		"passfile=" + conninfoQuote(passfile),
		"application_name=" + conninfoQuote(cluster.AppName(cfg.Name, n.Name)),
		"connect_timeout=10",
	}, " ")
	lines := []string{
		"port = " + fmt.Sprint(n.PGPort),
		"unix_socket_directories = " + confQuote(n.SocketDir),
	}
	if !n.SeparateConfig() {
		lines = append(lines, "cluster_name = "+confQuote(n.Name))
	}
	lines = append(lines,
		"hot_standby = on",
		// Set here, not inherited: pg_basebackup copies whatever the
		// upstream had. On: queries on the DR copy are not cancelled by
		// vacuum on the upstream; the upstream keeps the rows they need
		// (bounded by how long the longest query on the copy runs).
		"hot_standby_feedback = on",
		"primary_conninfo = "+confQuote(conninfo),
	)
	if up.Slot != "" {
		lines = append(lines, "primary_slot_name = "+confQuote(up.Slot))
	} else {
		lines = append(lines, "primary_slot_name = ''")
	}
	return append(lines, "recovery_target_timeline = 'latest'")
}
