package steps

import (
	"regexp"
	"strconv"
	"strings"
	"sync"

	"go.uber.org/zap"
)

// progressReporter is where a copy's progress goes: the running step's
// workflow.RunContext, which hands it to the sidecar file that `sdr
// status` reads and to the console's progress line.
type progressReporter interface {
	Progress(part string, done, total int64)
	EndProgress(part string)
}

// progressWriter reads what pg_basebackup -P writes on stderr (lines
// ended by \r on a terminal, \n otherwise) and reports each progress line
// ("N/M kB (P%), T/T tablespaces") as bytes done out of the estimated
// total. Other lines are logged at debug level. flush logs the last
// progress line, so the final figure stays in the log.
type progressWriter struct {
	mu   sync.Mutex
	log  *zap.Logger
	to   progressReporter
	part string
	buf  []byte
	last string // the last progress line
	done bool   // the part was ended
}

func newProgressWriter(log *zap.Logger) *progressWriter {
	return &progressWriter{log: log}
}

// reportTo sends the parsed progress to r as part.
func (p *progressWriter) reportTo(r progressReporter, part string) *progressWriter {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.to, p.part = r, part
	return p
}

// basebackupProgressRE is pg_basebackup's progress line, as printed by
// PostgreSQL 10 to 17 with and without -v (which adds the file name). The
// sizes are in kB of 1024 bytes.
var basebackupProgressRE = regexp.MustCompile(`^(\d+)/(\d+) kB \((\d+)%\), (\d+)/(\d+) tablespaces?\b`)

// basebackupLine is one parsed progress line of pg_basebackup -P.
type basebackupLine struct {
	DoneBytes, TotalBytes int64
	Percent               int
	Tablespaces, OfTotal  int
}

// parseBasebackupProgress parses one line of pg_basebackup -P output
// (leading padding allowed); ok is false for any other line.
func parseBasebackupProgress(line string) (basebackupLine, bool) {
	m := basebackupProgressRE.FindStringSubmatch(strings.TrimSpace(line))
	if m == nil {
		return basebackupLine{}, false
	}
	n := func(s string) int64 { v, _ := strconv.ParseInt(s, 10, 64); return v }
	return basebackupLine{DoneBytes: n(m[1]) * 1024, TotalBytes: n(m[2]) * 1024, Percent: int(n(m[3])),
		Tablespaces: int(n(m[4])), OfTotal: int(n(m[5]))}, true
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
		pr, ok := parseBasebackupProgress(line)
		if !ok {
			if !strings.HasPrefix(line, "pg_basebackup:") {
				line = "pg_basebackup: " + line
			}
			p.log.Debug(line)
			continue
		}
		p.last = line
		if p.to != nil && !p.done {
			p.to.Progress(p.part, pr.DoneBytes, pr.TotalBytes)
		}
	}
	if len(p.buf) > 4096 {
		p.buf = p.buf[len(p.buf)-4096:]
	}
	return len(b), nil
}

// flush logs the last progress line, so the final 100% is always in the
// log, and ends the part.
func (p *progressWriter) flush() {
	p.mu.Lock()
	last := p.last
	p.mu.Unlock()
	if last != "" {
		p.log.Info("basebackup progress: " + last)
	}
	p.end()
}

// end ends the part (the copy finished or failed); it may be called more
// than once.
func (p *progressWriter) end() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.to != nil && !p.done {
		p.to.EndProgress(p.part)
	}
	p.done = true
}
