package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// runEnv is what else went on around one timed run.
type runEnv struct {
	Load1       float64 `json:"load1_before"`
	BusyBefore  float64 `json:"busy_cores_before"`  // CPU cores busy in the last second before the run, with the bed idle: other work on the machine
	WaitedQuiet float64 `json:"waited_for_quiet_s"` // how long the run waited for the machine to be quiet
	BusyDuring  float64 `json:"busy_cores_during"`  // CPU cores busy on the whole machine during the run
}

// cpuTicks reads the machine's busy and total CPU time from /proc/stat.
func cpuTicks() (busy, total uint64, err error) {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, err
	}
	line, _, _ := strings.Cut(string(data), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0, 0, fmt.Errorf("/proc/stat: unexpected first line %q", line)
	}
	for i, v := range f[1:9] { // user nice system idle iowait irq softirq steal
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("/proc/stat: %w", err)
		}
		total += n
		if i != 3 && i != 4 {
			busy += n
		}
	}
	return busy, total, nil
}

// cpuMeter measures how many CPU cores were busy between start and stop.
type cpuMeter struct{ busy, total uint64 }

func startCPU() cpuMeter {
	b, t, _ := cpuTicks()
	return cpuMeter{b, t}
}

func (m cpuMeter) cores() float64 {
	b, t, err := cpuTicks()
	if err != nil || t <= m.total {
		return 0
	}
	return float64(b-m.busy) / float64(t-m.total) * float64(runtime.NumCPU())
}

func busyCoresOver(ctx context.Context, d time.Duration) (float64, error) {
	m := startCPU()
	select {
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-time.After(d):
	}
	return m.cores(), nil
}

func loadavg() (float64, float64, float64) {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0, 0, 0
	}
	f := strings.Fields(string(data))
	if len(f) < 3 {
		return 0, 0, 0
	}
	a, _ := strconv.ParseFloat(f[0], 64)
	b, _ := strconv.ParseFloat(f[1], 64)
	c, _ := strconv.ParseFloat(f[2], 64)
	return a, b, c
}

func machineInfo() machine {
	m := machine{CPUs: runtime.NumCPU(), Go: runtime.Version()}
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
		f.Close()
	}
	if f, err := os.Open("/proc/meminfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && k == "MemTotal" {
				m.MemTotal = strings.TrimSpace(v)
				break
			}
		}
		f.Close()
	}
	if data, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(data))
	}
	return m
}
