package steps

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"

	"github.com/pgsdr/sdr/cluster"
	"github.com/pgsdr/sdr/workflow"
)

// pgpassContent is the password file installed on every standby node: one
// line per host a standby node streams from (the primary-cluster nodes and
// the main standby).
func (e *Env) pgpassContent() string {
	var b strings.Builder
	add := func(n cluster.Node) {
		b.WriteString(cluster.PgpassLine(cluster.ConninfoHost(n.ReplHost()), strconv.Itoa(n.PGPort), "*", e.Config.Replication.User, e.Password))
		b.WriteString("\n")
	}
	for _, n := range e.Config.Primary.Nodes {
		add(n)
	}
	if m := e.Config.MainStandby(); m != nil {
		add(*m)
	}
	return b.String()
}

// prepareReplicationStandby drops this pair's inactive slots left on running
// standby nodes and installs the replication password file (0600).
func (e *Env) prepareReplicationStandby(ctx context.Context, rc *workflow.RunContext) error {
	content := e.pgpassContent()
	return forEach(ctx, e.standbyNodes(), func(ctx context.Context, n *cluster.Node) error {
		if _, err := e.access(ctx, n); err != nil {
			return err
		}
		// The slots and the password file are independent: side by side.
		return together(
			func() error {
				running, err := e.pgRunning(ctx, n, n.DataDir)
				if err != nil || !running {
					return err
				}
				return e.dropStaleSlots(ctx, rc, n)
			},
			func() error { return e.installPgpass(ctx, rc, n, content) },
		)
	})
}

// installPgpass writes the replication password file on n (0600).
func (e *Env) installPgpass(ctx context.Context, rc *workflow.RunContext, n *cluster.Node, content string) error {
	lay, err := e.layoutOf(ctx, n)
	if err != nil {
		return err
	}
	// libpq ignores a password file others can read: keep it 0600 even
	// when someone changed its mode (a new one is written 0600).
	// sdr's work directory (0700) and an existing file's mode (0600) are
	// put right in the action that reads the file.
	p := q(lay.Pgpass())
	wrote, err := e.ensureFileAfter(ctx, n, "mkdir -p "+q(lay.Work)+" && chmod 700 "+q(lay.Work)+" && { [ ! -e "+p+" ] || chmod 600 "+p+"; }",
		lay.Pgpass(), content)
	if err != nil {
		return fmt.Errorf("while installing the replication password file: %w", err)
	}
	msg := "replication password file already installed"
	if wrote {
		msg = "replication password file installed"
	}
	rc.Log.Info(msg, zap.String("node", n.Name), zap.String("file", lay.Pgpass()))
	return nil
}

// pairSlotNames are the names of every slot sdr may have made for this
// DR pair: one per node of either cluster (the main standby's on the
// primary, and the slots of nodes that were once on the other side). A
// slot of another pair, or one an operator made, is never among them.
func pairSlotNames(cfg *cluster.Config) []string {
	var out []string
	for _, cs := range []*cluster.ClusterSpec{&cfg.Primary, &cfg.Standby} {
		for _, n := range cs.Nodes {
			out = append(out, cluster.SlotName(cfg.Name, n.Name))
		}
	}
	return out
}

// staleSlotsSQL lists the inactive slots among the names given.
const staleSlotsSQL = `SELECT slot_name::text FROM pg_replication_slots WHERE slot_name = ANY($1) AND NOT active`

// dropStaleSlots drops this pair's inactive slots on a running standby
// node (left, for example, from when the node was a primary): they would
// keep WAL there for nobody.
func (e *Env) dropStaleSlots(ctx context.Context, rc *workflow.RunContext, n *cluster.Node) error {
	return e.withAdmin(ctx, n, func(ctx context.Context, c *pgx.Conn) error {
		slots, err := staleSlots(ctx, c, n.Name, pairSlotNames(e.Config))
		if err != nil {
			return err
		}
		for _, s := range slots {
			if _, err := c.Exec(ctx, `SELECT pg_drop_replication_slot($1)`, s); err != nil {
				return fmt.Errorf("while dropping stale slot %s on %s: %w", s, n.Name, err)
			}
			rc.Log.Info("stale slot of this pair dropped", zap.String("node", n.Name), zap.String("slot", s))
		}
		return nil
	})
}

// staleSlots lists the slots among names on the node of c that no process holds.
func staleSlots(ctx context.Context, c *pgx.Conn, node string, names []string) ([]string, error) {
	rows, err := c.Query(ctx, staleSlotsSQL, names)
	if err != nil {
		return nil, fmt.Errorf("while listing slots on %s: %w", node, err)
	}
	slots, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("while listing slots on %s: %w", node, err)
	}
	return slots, nil
}
