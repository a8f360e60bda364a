package cluster

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"go.uber.org/zap"
)

// Pool opens one Access per node on first use and keeps it. It is safe for
// concurrent use; opening different nodes happens in parallel. A connection
// that was lost is opened again on the next Get.
type Pool struct {
	cfg  *Config
	log  *zap.Logger
	open func(ctx context.Context, cfg *Config, n *Node) (Access, error)

	mu      sync.Mutex
	entries map[string]*poolEntry
	closed  bool
}

type poolEntry struct {
	mu sync.Mutex // held while opening
	a  Access
}

// Open returns a pool for the nodes of cfg. It connects to nothing yet.
func Open(ctx context.Context, cfg *Config, log *zap.Logger) *Pool {
	if log == nil {
		log = zap.NewNop()
	}
	return &Pool{cfg: cfg, log: log, open: openAccess, entries: map[string]*poolEntry{}}
}

// OpenWith is Open with the function that opens each node's Access: for
// tests, which give nodes fake ones.
func OpenWith(cfg *Config, log *zap.Logger, open func(ctx context.Context, cfg *Config, n *Node) (Access, error)) *Pool {
	p := Open(context.Background(), cfg, log)
	p.open = open
	return p
}

func openAccess(ctx context.Context, cfg *Config, n *Node) (Access, error) {
	if n.Local {
		return NewLocal(n), nil
	}
	return DialSSH(ctx, cfg, n)
}

// deader is an Access that can tell that its connection is gone.
type deader interface{ Dead() bool }

// Get returns the Access for node, opening it if needed.
func (p *Pool) Get(ctx context.Context, node string) (Access, error) {
	n, ok := p.cfg.Node(node)
	if !ok {
		return nil, fmt.Errorf("node %q is not in config %s", node, p.cfg.Path)
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, ErrPoolClosed
	}
	e := p.entries[node]
	if e == nil {
		e = &poolEntry{}
		p.entries[node] = e
	}
	p.mu.Unlock()

	e.mu.Lock()
	defer e.mu.Unlock()
	if e.a != nil {
		if d, ok := e.a.(deader); !ok || !d.Dead() {
			return e.a, nil
		}
		p.log.Info("connection lost; reconnecting", zap.String("node", node))
		_ = e.a.Close()
		e.a = nil
	}
	p.log.Debug("connecting", zap.String("node", node), zap.String("host", n.Host), zap.Bool("local", n.Local))
	a, err := p.open(ctx, p.cfg, n)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		_ = a.Close()
		return nil, ErrPoolClosed
	}
	e.a = a
	p.mu.Unlock()
	return a, nil
}

// Close closes every open Access.
func (p *Pool) Close() error {
	p.mu.Lock()
	p.closed = true
	entries := p.entries
	p.entries = map[string]*poolEntry{}
	p.mu.Unlock()
	var errs []error
	for _, e := range entries {
		e.mu.Lock()
		if e.a != nil {
			errs = append(errs, e.a.Close())
			e.a = nil
		}
		e.mu.Unlock()
	}
	return errors.Join(errs...)
}
