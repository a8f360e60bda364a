// Command sdr-bed builds and tears down the sdr end-to-end test bed (see
// package e2e/bed) for manual use and shell scripts.
//
//	sdr-bed up   [--dir D] [--name N] [--flavour pg_ctl|debian] [--addressing ipv4|names-ipv6] [--keep-on-failure]
//	                                                        build; print and write D/bed.env
//	sdr-bed down [--dir D] [--keep-logs]                    stop everything, remove D
//	sdr-bed sql  [--dir D] NODE QUERY                       run a query as postgres
//	sdr-bed env  [--dir D]                                  print D/bed.env lines again
//	sdr-bed logs [--dir D]                                  tails of server and sshd logs
//	sdr-bed ssh  [--dir D] [COMMAND]                        print the ssh command, or run COMMAND as postgres
//
// D defaults to /tmp/sdr-demo. The processes keep running after "up" exits.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/pgsdr/sdr/e2e/bed"
)

const defaultDir = "/tmp/sdr-demo"

func usage() {
	fmt.Fprint(os.Stderr, `usage:
  sdr-bed up   [--dir D] [--name N] [--flavour pg_ctl|debian] [--addressing ipv4|names-ipv6] [--keep-on-failure]
  sdr-bed down [--dir D] [--keep-logs]
  sdr-bed sql  [--dir D] NODE QUERY
  sdr-bed env  [--dir D]
  sdr-bed logs [--dir D]
  sdr-bed ssh  [--dir D] [COMMAND]
D defaults to `+defaultDir+`; nodes: `+strings.Join(bed.NodeNames, ", ")+`
`)
	os.Exit(2)
}

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	sub, args := os.Args[1], os.Args[2:]
	fs := flag.NewFlagSet("sdr-bed "+sub, flag.ExitOnError)
	dir := fs.String("dir", defaultDir, "bed directory (absolute, no spaces)")
	var err error
	switch sub {
	case "up":
		name := fs.String("name", "drpair", "DR pair name")
		keep := fs.Bool("keep-on-failure", false, "keep the directory and logs when up fails")
		flavour := fs.String("flavour", bed.FlavourPgCtl, "pg_ctl: configuration in the data directories, pg_ctl; debian: pg_createcluster clusters run by pg_ctlcluster")
		addressing := fs.String("addressing", bed.AddrIPv4, "ipv4: every host 127.0.0.1; names-ipv6: hosts localhost and ::1")
		fs.Parse(args)
		err = up(ctx, bed.Options{Dir: abs(*dir), Name: *name, KeepOnFailure: *keep, Flavour: *flavour, Addressing: *addressing, Log: logf})
	case "down":
		keep := fs.Bool("keep-logs", false, "stop the processes but keep the directory")
		fs.Parse(args)
		err = down(abs(*dir), *keep)
	case "sql":
		fs.Parse(args)
		if fs.NArg() != 2 {
			usage()
		}
		var b *bed.Bed
		if b, err = bed.Load(abs(*dir)); err == nil {
			var out string
			out, err = b.SQL(ctx, fs.Arg(0), fs.Arg(1))
			if out != "" {
				fmt.Println(out)
			}
		}
	case "env":
		fs.Parse(args)
		var b *bed.Bed
		if b, err = bed.Load(abs(*dir)); err == nil {
			fmt.Print(b.Env())
		}
	case "logs":
		fs.Parse(args)
		var b *bed.Bed
		if b, err = bed.Load(abs(*dir)); err == nil {
			fmt.Print(b.NodeLogs())
		}
	case "ssh":
		fs.Parse(args)
		var b *bed.Bed
		if b, err = bed.Load(abs(*dir)); err == nil {
			if fs.NArg() == 0 {
				fmt.Println(strings.Join(b.SSHArgs(), " "))
			} else {
				var out string
				out, err = b.SSH(ctx, strings.Join(fs.Args(), " "))
				if out != "" {
					fmt.Println(out)
				}
			}
		}
	case "-h", "--help", "help":
		usage()
	default:
		fmt.Fprintf(os.Stderr, "sdr-bed: unknown command %q\n", sub)
		usage()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "sdr-bed %s: %v\n", sub, err)
		os.Exit(1)
	}
}

func abs(dir string) string {
	a, err := filepath.Abs(dir)
	if err != nil {
		return dir
	}
	return a
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
}

func up(ctx context.Context, opts bed.Options) error {
	dir := opts.Dir
	if _, err := os.Stat(dir); err == nil {
		if ents, _ := os.ReadDir(dir); len(ents) > 0 {
			if !bed.IsBedDir(dir) {
				return fmt.Errorf("%s exists and is not a bed directory; not touching it", dir)
			}
			logf("sdr-bed: %s exists, taking the old bed down first", dir)
			if err := down(dir, false); err != nil {
				return err
			}
		}
	}
	b, err := bed.New(ctx, opts)
	if err != nil {
		return err
	}
	env := b.Env()
	if err := os.WriteFile(filepath.Join(dir, "bed.env"), []byte(env), 0o644); err != nil {
		return err
	}
	fmt.Print(env)
	logf("sdr-bed: up; source %s/bed.env; take it down with: sdr-bed down --dir %s", dir, dir)
	return nil
}

func down(dir string, keep bool) error {
	if _, err := os.Stat(dir); os.IsNotExist(err) {
		if l := bed.Leftovers(dir); len(l) > 0 {
			return fmt.Errorf("%s does not exist but processes of it run: %v", dir, l)
		}
		logf("sdr-bed: %s does not exist; nothing to do", dir)
		return nil
	}
	if !bed.IsBedDir(dir) {
		return fmt.Errorf("%s is not a bed directory (no %s)", dir, bed.StateFile)
	}
	if err := bed.CloseDir(dir, keep, logf); err != nil {
		return err
	}
	logf("sdr-bed: %s is down", dir)
	return nil
}
