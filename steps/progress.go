package steps

import (
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
)

// progressWriter turns pg_basebackup -P output (lines ended by \r) into
// a console line every few seconds.
type progressWriter struct {
	mu    sync.Mutex
	log   *zap.Logger
	buf   []byte
	last  string
	shown time.Time
	every time.Duration
	now   func() time.Time
}

func newProgressWriter(log *zap.Logger) *progressWriter {
	return &progressWriter{log: log, every: 2 * time.Second, now: time.Now}
}

func (p *progressWriter) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.buf = append(p.buf, b...)
	for {
		i := strings.IndexAny(string(p.buf), "\r\n")
		if i < 0 {
			break
		}
		line := strings.TrimSpace(string(p.buf[:i]))
		p.buf = p.buf[i+1:]
		if line == "" {
			continue
		}
		p.last = line
		if t := p.now(); t.Sub(p.shown) >= p.every {
			p.shown = t
			p.log.Info("basebackup progress: " + line)
		}
	}
	if len(p.buf) > 4096 {
		p.buf = p.buf[len(p.buf)-4096:]
	}
	return len(b), nil
}

// flush shows the last line, so the final 100% is always seen.
func (p *progressWriter) flush() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.last != "" {
		p.log.Info("basebackup progress: " + p.last)
	}
}
