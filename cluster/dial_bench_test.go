package cluster

import (
	"bufio"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// BenchmarkDialSSH dials the OpenSSH server of a test bed (make demo, or
// e2e/cmd/sdr-bed up) and runs one command, with and without prompt ACKs:
//
//	SDR_BENCH_BED=/tmp/sdr-demo go test -run '^$' -bench DialSSH ./cluster
//
// It is skipped without SDR_BENCH_BED. The user is the one the bed's sshd
// allows (postgres).
func BenchmarkDialSSH(b *testing.B) {
	dir := os.Getenv("SDR_BENCH_BED")
	if dir == "" {
		b.Skip("SDR_BENCH_BED (a test bed's directory) is not set")
	}
	port := 0
	f, err := os.Open(filepath.Join(dir, "ssh", "sshd_config"))
	if err != nil {
		b.Fatal(err)
	}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "Port "); ok {
			port, _ = strconv.Atoi(strings.TrimSpace(v))
		}
	}
	f.Close()
	if port == 0 {
		b.Fatalf("no Port in %s/ssh/sshd_config", dir)
	}
	cfg := &Config{}
	cfg.SSH.IdentityFile = filepath.Join(dir, "ssh", "client_key")
	cfg.SSH.KnownHosts = filepath.Join(dir, "ssh", "known_hosts")
	cfg.Timeouts.Connect.Duration = 10 * time.Second
	n := &Node{Name: "bed", Host: "127.0.0.1", SSHPort: port, SSHUser: "postgres"}
	for _, prompt := range []bool{true, false} {
		name := "prompt-acks"
		if !prompt {
			name = "delayed-acks"
		}
		b.Run(name, func(b *testing.B) {
			defer func(v bool) { promptAcks = v }(promptAcks)
			promptAcks = prompt
			for i := 0; i < b.N; i++ {
				s, err := DialSSH(context.Background(), cfg, n)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := s.Run(context.Background(), "true", RunOpts{}); err != nil {
					b.Fatal(err)
				}
				s.Close()
			}
		})
	}
}
