package cluster

import (
	"net"
	"strconv"
	"strings"

	"golang.org/x/crypto/ssh/knownhosts"
)

// The forms of one node address. A host in the config is a DNS name, an
// IPv4 address or an IPv6 address written without brackets ("::1"); each
// place sdr writes it takes its own form:
//
//	place                     name              IPv4             IPv6
//	SSH dial address          db1:22            10.0.0.1:22      [::1]:22
//	known_hosts entry         db1 / [db1]:2222  10.0.0.1 / [..]  ::1 / [::1]:2222
//	libpq host= (conninfo)    db1               10.0.0.1         ::1
//	pg_hba.conf address       db1               10.0.0.1/32      ::1/128
//	.pgpass host field        db1               10.0.0.1         \:\:1
//
// libpq takes an IPv6 address in host= as it is (brackets are an error
// there), and so does pg_hba.conf with a CIDR suffix. pg_hba.conf accepts a
// host name (PostgreSQL checks the client's reverse and forward DNS); a
// name is never given a netmask.

// SSHAddress is the host:port sdr dials for SSH: an IPv6 address gets
// brackets ("[::1]:22").
func SSHAddress(host string, port int) string {
	return net.JoinHostPort(host, strconv.Itoa(port))
}

// KnownHostsName is the name under which known_hosts must hold the host
// key of host:port, as OpenSSH writes it: the bare host on port 22,
// "[host]:port" otherwise ("[::1]:2222", "[db1]:2222").
func KnownHostsName(host string, port int) string {
	return knownhosts.Normalize(SSHAddress(host, port))
}

// ConninfoHost is host as a libpq host= value (primary_conninfo,
// pg_basebackup -d): names and addresses as they are, IPv6 without
// brackets, an IP address in its canonical form.
func ConninfoHost(host string) string {
	if ip := net.ParseIP(host); ip != nil {
		return ip.String()
	}
	return host
}

// HBAAddress is host as a pg_hba.conf address that matches that one
// machine: an IPv4 address with /32, an IPv6 address with /128, a host
// name as it is (PostgreSQL matches it by the client's reverse DNS,
// confirmed forward).
func HBAAddress(host string) string {
	if ip := net.ParseIP(host); ip != nil {
		if ip.To4() != nil {
			return ip.To4().String() + "/32"
		}
		return ip.String() + "/128"
	}
	return host
}

// SameHost reports whether two spellings of a host are the same address
// without asking DNS: equal IP addresses ("::1" and "0:0:0:0:0:0:0:1"), or
// names equal but for case.
func SameHost(a, b string) bool {
	ia, ib := net.ParseIP(a), net.ParseIP(b)
	if ia != nil || ib != nil {
		return ia != nil && ib != nil && ia.Equal(ib)
	}
	return strings.EqualFold(a, b)
}

// hostProblem says what is wrong with host as a node address, or "".
// See HostProblem.
func hostProblem(host string) string {
	switch strings.ToLower(host) {
	case "all", "samehost", "samenet":
		return "is a pg_hba.conf keyword, not a host: write the node's address or host name"
	}
	if host == "" {
		return "is empty"
	}
	if strings.HasPrefix(host, "[") || strings.HasSuffix(host, "]") {
		inner := strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
		if net.ParseIP(inner) != nil {
			return "is written with brackets: write an IPv6 address without them (" + inner + "); sdr adds them where SSH needs them"
		}
		return "is not a host name or IP address"
	}
	if i := strings.IndexByte(host, '%'); i >= 0 {
		return "has a zone index (" + host[i:] + "): pg_hba.conf cannot match a zone; use an address without one"
	}
	switch host[0] {
	case '.':
		return "starts with \".\", which pg_hba.conf reads as every host of a domain: write the node's own name"
	case '+', '@':
		return "starts with " + strconv.Quote(host[:1]) + ", which pg_hba.conf gives a special meaning"
	case '-':
		return "starts with \"-\": not a host name"
	}
	ip := net.ParseIP(host)
	if strings.Contains(host, ":") {
		if ip == nil {
			return "holds \":\" but is not an IPv6 address (write the port in ssh_port or pg_port, not in host)"
		}
		return ""
	}
	if strings.Trim(host, "0123456789.") == "" && ip == nil {
		return "is not a valid IPv4 address"
	}
	if ip == nil && !isDNSName(host) {
		return "is not a valid host name (labels of letters, digits and \"-\", separated by single dots)"
	}
	return ""
}

// isDNSName reports whether s is a host name: dot-separated labels of
// letters, digits, "-" and "_" (seen in real inventories), none empty,
// none starting or ending with "-", at most 253 characters.
func isDNSName(s string) bool {
	s = strings.TrimSuffix(s, ".")
	if s == "" || len(s) > 253 {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, c := range []byte(label) {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}
