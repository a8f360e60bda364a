package bed

import "testing"

// TestClusterPrefixTellsBedsApart: two beds in directories with the same
// base name get different Debian cluster names, so that taking one down
// does not remove the other's clusters; the e2e beds keep their short names.
func TestClusterPrefixTellsBedsApart(t *testing.T) {
	a, b := clusterPrefix("/tmp/h1/bed"), clusterPrefix("/tmp/h2/bed")
	if a == b {
		t.Fatalf("/tmp/h1/bed and /tmp/h2/bed share the cluster prefix %q", a)
	}
	if got := clusterPrefix("/tmp/sdr-bed-752849087"); got != "sdrbed752849087" {
		t.Errorf("clusterPrefix of an e2e bed = %q, want sdrbed752849087", got)
	}
}
