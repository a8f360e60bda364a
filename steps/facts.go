package steps

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/pgsdr/sdr/cluster"
)

// pgFacts is what one query tells about a node's PostgreSQL.
type pgFacts struct {
	Node           string
	InRecovery     bool
	VersionNum     int
	WalLevel       string
	MaxWalSenders  int
	UsedWalSenders int
	// PairWalSenders: of those, the walsenders of this pair's own stream
	// (the one on sdr's slot), which the DR side's rebuild ends before it
	// copies (set by the primary side's check, not by factsSQL).
	PairWalSenders int
	MaxSlots       int
	UsedSlots      int
	SystemID       string
}

const factsSQL = `SELECT pg_is_in_recovery(),
	current_setting('server_version_num')::int,
	current_setting('wal_level'),
	current_setting('max_wal_senders')::int,
	(SELECT count(*) FROM pg_stat_replication)::int,
	current_setting('max_replication_slots')::int,
	(SELECT count(*) FROM pg_replication_slots)::int,
	(SELECT system_identifier::text FROM pg_control_system())`

func queryFacts(ctx context.Context, c *pgx.Conn, node string) (pgFacts, error) {
	f := pgFacts{Node: node}
	err := c.QueryRow(ctx, factsSQL).Scan(&f.InRecovery, &f.VersionNum, &f.WalLevel, &f.MaxWalSenders, &f.UsedWalSenders,
		&f.MaxSlots, &f.UsedSlots, &f.SystemID)
	if err != nil {
		return f, fmt.Errorf("while reading settings of %s: %w", node, err)
	}
	return f, nil
}

// nodeFacts connects to n as admin and reads its facts.
func (e *Env) nodeFacts(ctx context.Context, n *cluster.Node) (pgFacts, error) {
	var f pgFacts
	err := e.withAdmin(ctx, n, func(ctx context.Context, c *pgx.Conn) error {
		var err error
		f, err = queryFacts(ctx, c, n.Name)
		return err
	})
	return f, err
}

// findPrimary returns the primary-cluster node that is not in recovery,
// checking that there is exactly one.
func (e *Env) findPrimary(ctx context.Context) (*cluster.Node, pgFacts, error) {
	nodes := e.primaryNodes()
	facts := make([]pgFacts, len(nodes))
	err := forEach(ctx, nodes, func(ctx context.Context, n *cluster.Node) error {
		var err error
		facts[indexOf(nodes, n)], err = e.nodeFacts(ctx, n)
		return err
	})
	if err != nil {
		return nil, pgFacts{}, err
	}
	i, err := choosePrimary(facts)
	if err != nil {
		return nil, pgFacts{}, err
	}
	return nodes[i], facts[i], nil
}
