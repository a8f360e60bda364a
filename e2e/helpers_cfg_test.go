package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/pgsdr/sdr/cluster"
	"github.com/pgsdr/sdr/e2e/bed"
)

// mainSlot and mainApp are the slot and application_name of the bed's
// main standby, as sdr names them.
func mainSlot(b *bed.Bed) string { return cluster.SlotName(b.Name, bed.DC2A) }
func mainApp(b *bed.Bed) string  { return cluster.AppName(b.Name, bed.DC2A) }

type cfgMap = map[string]any

func sub(m cfgMap, key string) cfgMap { return m[key].(cfgMap) }

// clusterMap returns the config of the cluster that plays role ("primary"
// or "standby") in m, as its primary: field says.
func clusterMap(m cfgMap, role string) cfgMap {
	primary := m["primary"].(string)
	for name, c := range sub(m, "clusters") {
		if (name == primary) == (role == "primary") {
			return c.(cfgMap)
		}
	}
	panic("no cluster for role " + role)
}

func nodeMap(m cfgMap, role string, i int) cfgMap {
	return clusterMap(m, role)["nodes"].([]any)[i].(cfgMap)
}

// postgresPIDs returns the postmaster of a data directory and its children.
func postgresPIDs(t *testing.T, dataDir string) []int {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(dataDir, "postmaster.pid"))
	if err != nil {
		t.Fatalf("reading postmaster.pid: %v", err)
	}
	pm, err := strconv.Atoi(strings.TrimSpace(strings.SplitN(string(raw), "\n", 2)[0]))
	if err != nil {
		t.Fatal(err)
	}
	pids := []int{pm}
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, s := range stats {
		b, err := os.ReadFile(s)
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...
		rest := string(b)
		if i := strings.LastIndex(rest, ")"); i >= 0 {
			f := strings.Fields(rest[i+1:])
			if len(f) > 1 && f[1] == strconv.Itoa(pm) {
				pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(s)))
				pids = append(pids, pid)
			}
		}
	}
	return pids
}

// livePIDs returns those of pids that still run (a zombie does not: in
// this sandbox nothing may reap it).
func livePIDs(pids []int) []int {
	var live []int
	for _, pid := range pids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		rest := string(b)
		if i := strings.LastIndex(rest, ")"); i >= 0 {
			if f := strings.Fields(rest[i+1:]); len(f) > 0 && (f[0] == "Z" || f[0] == "X") {
				continue
			}
		}
		live = append(live, pid)
	}
	return live
}

func signalAll(pids []int, sig syscall.Signal) {
	for _, p := range pids {
		_ = syscall.Kill(p, sig)
	}
}
