package bed

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// procID names a process by pid and start time (so that a reused pid is
// not mistaken for it). start 0 means "unknown, any".
type procID struct {
	pid   int
	start uint64
}

type procInfo struct {
	pid, ppid int
	start     uint64
	state     byte
	uid       int
	args      []string
}

func readProc(pid int) (procInfo, bool) {
	p := procInfo{pid: pid, uid: -1}
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return p, false
	}
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return p, false
	}
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 20 {
		return p, false
	}
	p.state = f[0][0]
	p.ppid, _ = strconv.Atoi(f[1])
	p.start, _ = strconv.ParseUint(f[19], 10, 64)
	if fi, err := os.Stat("/proc/" + strconv.Itoa(pid)); err == nil {
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			p.uid = int(st.Uid)
		}
	}
	if cmd, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline"); err == nil {
		for _, a := range bytes.Split(bytes.TrimRight(cmd, "\x00"), []byte{0}) {
			p.args = append(p.args, string(a))
		}
	}
	return p, true
}

func allProcs() map[int]procInfo {
	m := map[int]procInfo{}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return m
	}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if p, ok := readProc(pid); ok {
			m[pid] = p
		}
	}
	return m
}

// bedProcs finds the live processes of the bed in dir: the postgres OS
// user's processes with an argument under dir (postmasters, pg_ctl,
// pg_basebackup, ...), the sshd started with dir's sshd_config, and all
// their descendants; never this process or its ancestors.
func bedProcs(dir string) []procID {
	pgUID := -1
	if uid, _, err := postgresIDs(); err == nil {
		pgUID = uid
	}
	prefix := dir + string(filepath.Separator)
	sshdCfg := filepath.Join(dir, "ssh", "sshd_config")
	procs := allProcs()

	exclude := map[int]bool{}
	for pid := os.Getpid(); pid > 1; {
		exclude[pid] = true
		p, ok := procs[pid]
		if !ok {
			break
		}
		pid = p.ppid
	}

	ours := map[int]bool{}
	for pid, p := range procs {
		if exclude[pid] || p.state == 'Z' {
			continue
		}
		if strings.Contains(strings.Join(p.args, " "), sshdCfg) {
			ours[pid] = true // sshd rewrites its title, so not an exact arg
			continue
		}
		for _, a := range p.args {
			if p.uid == pgUID && strings.HasPrefix(a, prefix) {
				ours[pid] = true
				break
			}
		}
	}
	children := map[int][]int{}
	for pid, p := range procs {
		children[p.ppid] = append(children[p.ppid], pid)
	}
	queue := make([]int, 0, len(ours))
	for pid := range ours {
		queue = append(queue, pid)
	}
	for len(queue) > 0 {
		pid := queue[0]
		queue = queue[1:]
		for _, c := range children[pid] {
			if !ours[c] && !exclude[c] && procs[c].state != 'Z' {
				ours[c] = true
				queue = append(queue, c)
			}
		}
	}
	var out []procID
	for pid := range ours {
		out = append(out, procID{pid: pid, start: procs[pid].start})
	}
	return out
}

// same reports whether the process still exists (not a zombie) and is the
// same one (start time).
func (p procID) same() bool {
	info, ok := readProc(p.pid)
	if !ok || info.state == 'Z' {
		return false
	}
	return p.start == 0 || info.start == p.start
}

func alive(pid int) bool { return procID{pid: pid}.same() }

func waitGone(ps []procID, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for {
		any := false
		for _, p := range ps {
			if p.same() {
				any = true
				break
			}
		}
		if !any {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// isOurSSHD reports whether pid is an sshd started with dir's sshd_config.
func isOurSSHD(pid int, dir string) bool {
	p, ok := readProc(pid)
	if !ok {
		return false
	}
	return strings.Contains(strings.Join(p.args, " "), filepath.Join(dir, "ssh", "sshd_config"))
}

// descendants lists the live descendants of pid.
func descendants(pid int) []int {
	procs := allProcs()
	children := map[int][]int{}
	for p, info := range procs {
		children[info.ppid] = append(children[info.ppid], p)
	}
	var out []int
	queue := []int{pid}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		for _, c := range children[p] {
			out = append(out, c)
			queue = append(queue, c)
		}
	}
	return out
}
