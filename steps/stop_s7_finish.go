package steps

import (
	"context"
	"fmt"
	"path"
	"strings"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"

	"github.com/pgsdr/sdr/cluster"
	"github.com/pgsdr/sdr/workflow"
)

// finishPrimary looks at every primary-cluster node again and fails,
// naming what is left, unless no slot of this pair and no sdr block in the
// live hba_file remain. Its done record sets the state to normal.
func (s *stopRun) finishPrimary(ctx context.Context, rc *workflow.RunContext) error {
	e := s.e
	nodes := e.primaryNodes()
	found := make([]primaryLeft, len(nodes))
	names := pairSlotNames(e.Config)
	err := forEach(ctx, nodes, func(ctx context.Context, n *cluster.Node) error {
		a, err := e.access(ctx, n)
		if err != nil {
			return err
		}
		l := primaryLeft{Node: n.Name}
		err = e.withAdmin(ctx, n, func(ctx context.Context, c *pgx.Conn) error {
			slots, err := pairSlots(ctx, c, n.Name, names)
			if err != nil {
				return err
			}
			for _, sl := range slots {
				l.Slots = append(l.Slots, sl.Name)
			}
			if err := c.QueryRow(ctx, `SELECT current_setting('hba_file')`).Scan(&l.HBAFile); err != nil {
				return fmt.Errorf("while reading hba_file on %s: %w", n.Name, err)
			}
			raw, err := a.ReadFile(ctx, l.HBAFile)
			if err != nil {
				return fmt.Errorf("while reading %s on %s: %w", l.HBAFile, n.Name, err)
			}
			l.HBABlock = cluster.HasBlock(string(raw), e.hbaMarker())
			return nil
		})
		found[indexOf(nodes, n)] = l
		return err
	})
	if err != nil {
		return err
	}
	if left := stopLeftovers(found, nil); len(left) > 0 {
		return leftoversError(left)
	}
	rc.Log.Info("nothing of the DR pair is left on the primary cluster")
	return nil
}

// finishStandby looks at every DR node again and fails, naming what is
// left, unless no node keeps sdr's replication settings, pg_hba.conf
// block, password file, this pair's slots or an upstream. Its done record
// sets the state to normal.
func (s *stopRun) finishStandby(ctx context.Context, rc *workflow.RunContext) error {
	e := s.e
	nodes := e.standbyNodes()
	found := make([]drLeft, len(nodes))
	err := forEach(ctx, nodes, func(ctx context.Context, n *cluster.Node) error {
		l, err := s.observeDRLeft(ctx, n)
		found[indexOf(nodes, n)] = l
		return err
	})
	if err != nil {
		return err
	}
	if left := stopLeftovers(nil, found); len(left) > 0 {
		return leftoversError(left)
	}
	for _, l := range found {
		rc.Log.Info("DR node left "+drEndState(l), zap.String("node", l.Node))
	}
	return nil
}

// observeDRLeft reads what is left of the pair on DR node n.
func (s *stopRun) observeDRLeft(ctx context.Context, n *cluster.Node) (drLeft, error) {
	e := s.e
	l := drLeft{Node: n.Name}
	a, err := e.access(ctx, n)
	if err != nil {
		return l, err
	}
	lay, err := e.layoutOf(ctx, n)
	if err != nil {
		return l, err
	}
	for _, f := range append(drFilesLeft(lay), lay.New(), lay.Saved()) {
		ok, err := e.fileExists(ctx, n, f)
		if err != nil {
			return l, err
		}
		if ok {
			l.Files = append(l.Files, f)
		}
	}
	auto, _, err := readOptional(ctx, e, a, path.Join(lay.DataDir, "postgresql.auto.conf"))
	if err != nil {
		return l, err
	}
	if lines, ok := cluster.BlockLines(auto, e.Config.Name); ok {
		_, l.Settings = detachBlock(lines)
	}
	hbaPath, err := e.drHbaFile(ctx, n)
	if err != nil {
		return l, err
	}
	hba, _, err := readOptional(ctx, e, a, hbaPath)
	if err != nil {
		return l, err
	}
	l.HBAFile, l.HBABlock = hbaPath, cluster.HasBlock(hba, e.Config.Name)
	if l.Running, err = e.pgRunning(ctx, n, lay.DataDir); err != nil || !l.Running {
		return l, err
	}
	err = e.withAdmin(ctx, n, func(ctx context.Context, c *pgx.Conn) error {
		if err := c.QueryRow(ctx, `SELECT pg_is_in_recovery(), current_setting('primary_conninfo') <> '',
			EXISTS (SELECT 1 FROM pg_stat_wal_receiver WHERE pid IS NOT NULL)`).Scan(&l.InRecovery, &l.Conninfo, &l.Receiver); err != nil {
			return fmt.Errorf("while asking %s what it is: %w", n.Name, err)
		}
		slots, err := pairSlots(ctx, c, n.Name, cascadeSlotNames(e.Config))
		for _, sl := range slots {
			l.Slots = append(l.Slots, sl.Name)
		}
		return err
	})
	return l, err
}

func leftoversError(left []string) error {
	return fmt.Errorf("the earlier steps ran, but what they removed is back or still there: %s; "+
		"rerun with --restart to run every step again", strings.Join(left, "; "))
}
