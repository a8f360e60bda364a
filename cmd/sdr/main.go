// Command sdr sets up and watches a streaming disaster-recovery pair of
// PostgreSQL clusters. See README.md and docs/.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	// A closed terminal (SIGHUP) stops a run the way Ctrl-C and SIGTERM do:
	// the current step stops at its next safe point and the interruption
	// is recorded.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	code := Run(ctx, os.Args, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
