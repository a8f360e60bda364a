package steps

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestRecordLineCmdWritesOnlyAfterSuccess(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "new complete 'x'")
	run := func(before string) (string, error) {
		out, err := exec.Command("/bin/sh", "-c", before+" && "+recordLineCmd(p, "run-1/dc2-a", "the complete copy")).CombinedOutput()
		return string(out), err
	}
	if out, err := run("false"); err == nil || out != "" {
		t.Fatalf("after a failed command: %q, %v; want its failure and nothing said", out, err)
	}
	if _, err := os.Stat(p); !os.IsNotExist(err) {
		t.Fatalf("written after a failed command (%v)", err)
	}
	if out, err := run("true"); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	b, err := os.ReadFile(p)
	if err != nil || string(b) != "run-1/dc2-a\n" {
		t.Fatalf("content %q, %v", b, err)
	}
	if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", fi.Mode().Perm())
	}
	if _, err := os.Stat(p + ".tmp"); !os.IsNotExist(err) {
		t.Errorf("the temporary file is left (%v)", err)
	}
	// A place it cannot be written says what and where.
	bad := filepath.Join(dir, "missing", "new.complete")
	out, err := exec.Command("/bin/sh", "-c", "true && "+recordLineCmd(bad, "x", "the complete copy")).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "sdr: could not record the complete copy in "+bad) {
		t.Fatalf("unwritable: %q, %v", out, err)
	}
}
