package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/pgsdr/sdr/e2e/bed"
	"github.com/pgsdr/sdr/e2e/benchcalls"
)

// The shim directory is what the benchmark's sdr config names as every
// node's bin_dir. pg_ctl, pg_basebackup and initdb (the fan-out copy's
// initdb --sync-only, which writes the copies to disk as pg_basebackup
// does its own) in it are symbolic links to a
// copy of sdr-bench-shim, which records when each call of the real
// program starts and ends (package e2e/benchcalls); every other program
// is a plain symbolic link to the real one in bed.BinDir.

const shimBinary = "sdr-bench-shim"

// shimmed are the programs whose calls are timed.
var shimmed = []string{"pg_ctl", "pg_basebackup", "initdb"}

func isShimmed(name string) bool {
	for _, s := range shimmed {
		if s == name {
			return true
		}
	}
	return false
}

// makeShimDir fills dir (created, mode 0755) with a copy of the shim
// binary, the links and an empty calls log owned by the postgres OS user.
func makeShimDir(dir, shim string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := copyFile(shim, filepath.Join(dir, shimBinary), 0o755); err != nil {
		return fmt.Errorf("while copying the shim binary into %s: %w", dir, err)
	}
	ents, err := os.ReadDir(bed.BinDir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		target := filepath.Join(bed.BinDir, e.Name())
		if isShimmed(e.Name()) {
			target = shimBinary
		}
		if err := os.Symlink(target, filepath.Join(dir, e.Name())); err != nil {
			return err
		}
	}
	return resetCallsLog(dir)
}

func resetCallsLog(dir string) error {
	p := filepath.Join(dir, benchcalls.FileName)
	if err := os.WriteFile(p, nil, 0o644); err != nil {
		return err
	}
	if err := os.Truncate(p, 0); err != nil {
		return err
	}
	uid, gid, err := postgresIDs()
	if err != nil {
		return err
	}
	return os.Chown(p, uid, gid)
}

func readCalls(dir string) ([]benchcalls.Record, error) {
	f, err := os.Open(filepath.Join(dir, benchcalls.FileName))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return benchcalls.Parse(f)
}

func copyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
