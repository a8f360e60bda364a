package cluster

import "testing"

func TestAddressForms(t *testing.T) {
	cases := []struct {
		name                   string
		host                   string
		port                   int
		ssh, knownHosts, libpq string
		hba                    string
	}{
		{"IPv4, port 22", "10.0.2.10", 22, "10.0.2.10:22", "10.0.2.10", "10.0.2.10", "10.0.2.10/32"},
		{"IPv4, other port", "127.0.0.1", 2222, "127.0.0.1:2222", "[127.0.0.1]:2222", "127.0.0.1", "127.0.0.1/32"},
		{"IPv6 loopback, port 22", "::1", 22, "[::1]:22", "::1", "::1", "::1/128"},
		{"IPv6 loopback, other port", "::1", 2222, "[::1]:2222", "[::1]:2222", "::1", "::1/128"},
		{"IPv6 long form is made canonical", "fd00:0:0:0:0:0:2:10", 22, "[fd00:0:0:0:0:0:2:10]:22", "fd00:0:0:0:0:0:2:10", "fd00::2:10", "fd00::2:10/128"},
		{"IPv4-mapped IPv6 is IPv4 in pg_hba.conf", "::ffff:10.0.2.10", 22, "[::ffff:10.0.2.10]:22", "::ffff:10.0.2.10", "10.0.2.10", "10.0.2.10/32"},
		{"host name", "db1.example.com", 22, "db1.example.com:22", "db1.example.com", "db1.example.com", "db1.example.com"},
		{"localhost, other port", "localhost", 2200, "localhost:2200", "[localhost]:2200", "localhost", "localhost"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := SSHAddress(tc.host, tc.port); got != tc.ssh {
				t.Errorf("SSHAddress = %q, want %q", got, tc.ssh)
			}
			if got := KnownHostsName(tc.host, tc.port); got != tc.knownHosts {
				t.Errorf("KnownHostsName = %q, want %q", got, tc.knownHosts)
			}
			if got := ConninfoHost(tc.host); got != tc.libpq {
				t.Errorf("ConninfoHost = %q, want %q", got, tc.libpq)
			}
			if got := HBAAddress(tc.host); got != tc.hba {
				t.Errorf("HBAAddress = %q, want %q", got, tc.hba)
			}
		})
	}
}

func TestPgpassLineIPv6(t *testing.T) {
	// libpq compares the pgpass host field, unescaped, with host= as given.
	if got, want := PgpassLine("::1", "5432", "*", "repl", "pw"), `\:\:1:5432:*:repl:pw`; got != want {
		t.Errorf("PgpassLine = %q, want %q", got, want)
	}
}

func TestSameHost(t *testing.T) {
	cases := []struct {
		name string
		a, b string
		want bool
	}{
		{"same IPv4", "10.0.0.1", "10.0.0.1", true},
		{"IPv6 spellings", "::1", "0:0:0:0:0:0:0:1", true},
		{"IPv4 and its mapped IPv6", "10.0.0.1", "::ffff:10.0.0.1", true},
		{"names differ in case", "DB1.example.com", "db1.example.com", true},
		{"name and address are not compared through DNS", "localhost", "127.0.0.1", false},
		{"different addresses", "::1", "::2", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := SameHost(tc.a, tc.b); got != tc.want {
				t.Errorf("SameHost(%q, %q) = %v, want %v", tc.a, tc.b, got, tc.want)
			}
		})
	}
}
