// Command sdr-bench-shim times calls of pg_ctl, pg_basebackup and initdb
// for sdr-bench. sdr-bench puts it in a shim directory that the
// benchmark's sdr config names as every node's bin_dir, with links named
// pg_ctl, pg_basebackup and initdb pointing at it (every other program
// there is a link to the real one). Called through such a link, it runs the real program of
// that name from /usr/lib/postgresql/15/bin with the same arguments,
// standard streams and forwarded signals, then appends when the real
// program started and ended to calls.log beside itself (package
// e2e/benchcalls) and exits with the real program's exit code.
//
// It imports only the standard library and benchcalls, so that its own
// start-up adds as little as possible to what it measures; sdr-bench
// calibrates what it still adds.
package main

import (
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/pgsdr/sdr/e2e/benchcalls"
)

// realBinDir holds the real PostgreSQL 15 programs (Debian).
const realBinDir = "/usr/lib/postgresql/15/bin"

func main() {
	prog := filepath.Base(os.Args[0])
	if prog != "pg_ctl" && prog != "pg_basebackup" && prog != "initdb" {
		fmt.Fprintf(os.Stderr, "sdr-bench-shim: call me through a link named pg_ctl, pg_basebackup or initdb, not %s\n", prog)
		os.Exit(2)
	}
	real := filepath.Join(realBinDir, prog)
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGQUIT)
	start := time.Now()
	p, err := os.StartProcess(real, append([]string{real}, os.Args[1:]...),
		&os.ProcAttr{Files: []*os.File{os.Stdin, os.Stdout, os.Stderr}})
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s (benchmark shim): %v\n", prog, err)
		os.Exit(127)
	}
	go func() {
		for s := range sigs {
			_ = p.Signal(s)
		}
	}()
	st, err := p.Wait()
	end := time.Now()
	code := 1
	if err == nil {
		code = st.ExitCode()
		if ws, ok := st.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			code = 128 + int(ws.Signal())
		}
	}
	rec := benchcalls.Record{Prog: prog, Mode: benchcalls.Mode(prog, os.Args[1:]), Dir: benchcalls.DataDir(os.Args[1:]), Start: start, End: end, Exit: code}
	if self, err := os.Executable(); err == nil {
		f, err := os.OpenFile(filepath.Join(filepath.Dir(self), benchcalls.FileName), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
		if err == nil {
			_, _ = f.WriteString(rec.Line()) // one short write: atomic with O_APPEND
			f.Close()
		}
	}
	os.Exit(code)
}
