package steps

import (
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/pgsdr/sdr/cluster"
	"github.com/pgsdr/sdr/workflow"
)

// versions are one server of each supported major, as server_version_num.
var versions = []pgVersion{130016, 140013, 150018, 160004, 170002}

func TestParseServerVersion(t *testing.T) {
	cases := []struct {
		name    string
		in      string
		want    pgVersion
		wantErr bool
	}{
		{"13", "13.16", 130016, false},
		{"14 on RHEL", "14.13", 140013, false},
		{"15 from Debian", "15.18 (Debian 15.18-0+deb12u1)", 150018, false},
		{"16 from PGDG", "16.4 (Ubuntu 16.4-1.pgdg22.04+1)", 160004, false},
		{"17 beta", "17beta2", 170000, false},
		{"17", "17.2", 170002, false},
		{"9.6 is too old to read as major.minor", "9.6.24", 0, true},
		{"garbage", "PostgreSQL", 0, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseServerVersion(tc.in)
			if (err != nil) != tc.wantErr || got != tc.want {
				t.Errorf("parseServerVersion(%q) = %v, %v; want %v, error %v", tc.in, got, err, tc.want, tc.wantErr)
			}
		})
	}
}

func TestCheckSupported(t *testing.T) {
	cases := []struct {
		name    string
		v       pgVersion
		refused bool
	}{
		{"12 refused", 120020, true},
		{"13", 130016, false},
		{"14", 140013, false},
		{"15", 150018, false},
		{"16", 160004, false},
		{"17", 170002, false},
		{"18 runs with 17's rules", 180000, false},
		{"unknown is not refused here", 0, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := checkSupported("the primary dc1-a", tc.v)
			if (err != nil) != tc.refused {
				t.Fatalf("checkSupported(%v) = %v, refused want %v", tc.v, err, tc.refused)
			}
			if err != nil && !workflow.IsPermanent(err) {
				t.Errorf("a refused version must be permanent: %v", err)
			}
		})
	}
}

func TestFeaturesPerVersion(t *testing.T) {
	cases := []struct {
		name string
		v    pgVersion
		want pgFeatures
	}{
		{"unknown: the oldest supported rules", 0, pgFeatures{Major: 13, StatsTempDirectory: true}},
		{"13", 130016, pgFeatures{Major: 13, StatsTempDirectory: true}},
		{"14", 140013, pgFeatures{Major: 14, StatsTempDirectory: true}},
		{"15", 150018, pgFeatures{Major: 15, ServerCompression: true}},
		{"16", 160004, pgFeatures{Major: 16, HBA16: true, ServerCompression: true}},
		{"17", 170002, pgFeatures{Major: 17, HBA16: true, SlotInvalidationReason: true, ServerCompression: true}},
		{"18: the newest known rules", 180001, pgFeatures{Major: 17, HBA16: true, SlotInvalidationReason: true, ServerCompression: true}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := features(tc.v); got != tc.want {
				t.Errorf("features(%v) = %+v, want %+v", tc.v, got, tc.want)
			}
		})
	}
}

// span is the majors in which a column or setting exists (0: no bound).
type span struct{ since, until int }

func (s span) has(major int) bool {
	return (s.since == 0 || major >= s.since) && (s.until == 0 || major <= s.until)
}

// versionedColumns are the columns of the views sdr reads that are not in
// every major from 13 to 17, or that were removed just before 13 (so that
// sdr's SQL never comes back to them).
var versionedColumns = map[string]span{
	// pg_replication_slots
	"safe_wal_size":       {13, 0},
	"two_phase":           {14, 0},
	"conflicting":         {16, 0},
	"inactive_since":      {17, 0},
	"invalidation_reason": {17, 0},
	"failover":            {17, 0},
	"synced":              {17, 0},
	// pg_hba_file_rules
	"rule_number": {16, 0},
	"file_name":   {16, 0},
	// pg_stat_wal_receiver
	"received_lsn": {0, 12},
	"written_lsn":  {13, 0},
	"flushed_lsn":  {13, 0},
	// pg_stat_activity
	"query_id": {14, 0},
	// settings read with current_setting or pg_settings
	"wal_keep_segments": {0, 12},
	"wal_keep_size":     {13, 0},
}

// versionedSettings are the settings postgres -C is asked for that do not
// exist in every supported major; asking for an unknown one is FATAL.
var versionedSettings = map[string]span{
	"stats_temp_directory": {0, 14},
	"wal_keep_size":        {13, 0},
	"primary_conninfo":     {12, 0},
	"primary_slot_name":    {12, 0},
}

var identRE = regexp.MustCompile(`[a-z_][a-z0-9_]*`)

// sqlOf is every SQL text sdr sends to a server of major f.Major.
func sqlOf(f pgFeatures) map[string]string {
	return map[string]string{
		"factsSQL":        factsSQL,
		"remoteFactsSQL":  remoteFactsSQL,
		"readinessSQL":    readinessSQL,
		"slotSQL":         f.slotSQL(),
		"walReceiverSQL":  walReceiverSQL,
		"runningDirSQL":   runningDirSQL,
		"walsenderSQL":    walsenderSQL,
		"roleSQL":         roleSQL,
		"walKeepSQL":      walKeepSQL,
		"replicationSQL":  replicationSQL,
		"nodeStatusSQL":   nodeStatusSQL,
		"hbaErrorsSQL":    f.hbaErrorsSQL(),
		"showConfigSQL":   showConfigSQL,
		"cascadeSlotSQL":  cascadeSlotSQL,
		"staleSlotsSQL":   staleSlotsSQL,
		"slotSettingsSQL": reloadSettingSQL,
	}
}

// TestSQLUsesOnlyColumnsOfItsVersion checks, for each supported major,
// that no SQL sdr sends to it names a column or setting that major lacks.
func TestSQLUsesOnlyColumnsOfItsVersion(t *testing.T) {
	for _, v := range versions {
		f := features(v)
		t.Run(v.String(), func(t *testing.T) {
			for name, sql := range sqlOf(f) {
				for _, id := range identRE.FindAllString(sql, -1) {
					if s, ok := versionedColumns[id]; ok && !s.has(f.Major) {
						t.Errorf("%s names %s, which PostgreSQL %d does not have:\n%s", name, id, f.Major, sql)
					}
				}
			}
			for _, s := range append(f.copySettings(), sslFileSettings...) {
				if sp, ok := versionedSettings[s]; ok && !sp.has(f.Major) {
					t.Errorf("the pre-swap check asks postgres -C for %s, which PostgreSQL %d does not have", s, f.Major)
				}
			}
		})
	}
}

// TestVersionedSQLUsesWhatItCan checks the other way round: where a major
// has the better column, sdr reads it.
func TestVersionedSQLUsesWhatItCan(t *testing.T) {
	cases := []struct {
		v                       pgVersion
		hbaFileName, slotReason bool
		statsTempDir            bool
	}{
		{130016, false, false, true},
		{140013, false, false, true},
		{150018, false, false, false},
		{160004, true, false, false},
		{170002, true, true, false},
	}
	for _, tc := range cases {
		t.Run(tc.v.String(), func(t *testing.T) {
			f := features(tc.v)
			ids := func(sql string) []string { return identRE.FindAllString(sql, -1) }
			if got := slices.Contains(ids(f.hbaErrorsSQL()), "file_name"); got != tc.hbaFileName {
				t.Errorf("hbaErrorsSQL reads file_name: %v, want %v", got, tc.hbaFileName)
			}
			if got := slices.Contains(ids(f.slotSQL()), "invalidation_reason"); got != tc.slotReason {
				t.Errorf("slotSQL reads invalidation_reason: %v, want %v", got, tc.slotReason)
			}
			if got := slices.Contains(f.copySettings(), "stats_temp_directory"); got != tc.statsTempDir {
				t.Errorf("copySettings has stats_temp_directory: %v, want %v", got, tc.statsTempDir)
			}
		})
	}
}

func TestBasebackupArgsPerVersion(t *testing.T) {
	want := "-D /d.sdr/new -X stream -c fast -P -d 'host=::1 port=5432 user=sdr_repl' -S sdr_p_dc2a --tablespace-mapping=/ts/one=/ts/one.dc2a.sdr/new"
	for _, v := range versions {
		t.Run(v.String(), func(t *testing.T) {
			got := strings.Join(features(v).basebackupArgs("/d.sdr/new", "host=::1 port=5432 user=sdr_repl", "sdr_p_dc2a",
				[][2]string{{"/ts/one", "/ts/one.dc2a.sdr/new"}}, cluster.CopyOptions{}), " ")
			if got != want {
				t.Errorf("basebackupArgs =\n%s\nwant\n%s", got, want)
			}
		})
	}
	if got := strings.Join(features(150018).basebackupArgs("/d", "host=h", "", nil, cluster.CopyOptions{}), " "); strings.Contains(got, "-S") {
		t.Errorf("a cascade's copy without a slot got -S: %s", got)
	}
}

func TestCopyArgsWithWANOptions(t *testing.T) {
	wan := cluster.CopyOptions{Compress: "server-zstd:3", MaxRate: "100M"}
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"main standby's copy, compressed and limited",
			features(150018).basebackupArgs("/d", "host=h", "s", nil, wan),
			"-D /d -X stream -c fast -P -d host=h -S s --compress=server-zstd:3 --max-rate=102400"},
		{"rate limit only, any version",
			features(130016).basebackupArgs("/d", "host=h", "s", nil, cluster.CopyOptions{MaxRate: "2048"}),
			"-D /d -X stream -c fast -P -d host=h -S s --max-rate=2048"},
		{"method without a level",
			features(170002).basebackupArgs("/d", "host=h", "", nil, cluster.CopyOptions{Compress: "server-lz4"}),
			"-D /d -X stream -c fast -P -d host=h --compress=server-lz4"},
		{"fan-out stream, plain: the manifest stays in the tar",
			features(150018).tarStreamArgs("host=h port=1", cluster.CopyOptions{}),
			"-D - -F tar -X fetch -c fast -P -d 'host=h port=1'"},
		{"fan-out stream, compressed: no manifest",
			features(160004).tarStreamArgs("host=h", wan),
			"-D - -F tar -X fetch -c fast -P -d host=h --no-manifest --compress=server-zstd:3 --max-rate=102400"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := strings.Join(tc.args, " "); got != tc.want {
				t.Errorf("got\n%s\nwant\n%s", got, tc.want)
			}
		})
	}
}

func TestCheckCopyOptionsPerVersion(t *testing.T) {
	const built15 = "pglz,lz4,zstd,on,off,true,false,yes,no,1,0"
	cases := []struct {
		name    string
		v       pgVersion
		o       cluster.CopyOptions
		methods string
		wantErr bool
	}{
		{"nothing asked, 13", 130016, cluster.CopyOptions{}, "", false},
		{"rate limit only, 13", 130016, cluster.CopyOptions{MaxRate: "10M"}, "", false},
		{"compression before 15", 140013, cluster.CopyOptions{Compress: "server-gzip"}, "", true},
		{"zstd, 15 built with it", 150018, cluster.CopyOptions{Compress: "server-zstd"}, built15, false},
		{"lz4, 17 built with it", 170002, cluster.CopyOptions{Compress: "server-lz4:5"}, built15, false},
		{"zstd, 15 built without it", 150018, cluster.CopyOptions{Compress: "server-zstd"}, "pglz,lz4,on,off", true},
		{"lz4, 16 built without it", 160004, cluster.CopyOptions{Compress: "server-lz4"}, "pglz,zstd,on,off", true},
		{"gzip, 15: not shown by wal_compression, accepted", 150018, cluster.CopyOptions{Compress: "server-gzip:9"}, "pglz,on,off", false},
		{"a major newer than sdr knows", 180000, cluster.CopyOptions{Compress: "server-zstd"}, built15, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := features(tc.v).checkCopyOptions(tc.o, "dc1-a", tc.v, tc.methods)
			if (err != nil) != tc.wantErr {
				t.Fatalf("error %v, want error %v", err, tc.wantErr)
			}
			if err != nil && !workflow.IsPermanent(err) {
				t.Errorf("a refusal that a rerun cannot fix is not permanent: %v", err)
			}
		})
	}
}

func TestExtractCommand(t *testing.T) {
	cases := []struct {
		name string
		o    cluster.CopyOptions
		want string
	}{
		{"plain", cluster.CopyOptions{}, "mkdir -m 700 -- '/d d.sdr/new' && tar -x -p -f - -C '/d d.sdr/new' && exec cat >/dev/null"},
		{"zstd", cluster.CopyOptions{Compress: "server-zstd:9"}, "mkdir -m 700 -- '/d d.sdr/new' && tar -x -p -f - -C '/d d.sdr/new' -I zstd && exec cat >/dev/null"},
		{"lz4", cluster.CopyOptions{Compress: "server-lz4"}, "mkdir -m 700 -- '/d d.sdr/new' && tar -x -p -f - -C '/d d.sdr/new' -I lz4 && exec cat >/dev/null"},
		{"gzip", cluster.CopyOptions{Compress: "server-gzip"}, "mkdir -m 700 -- '/d d.sdr/new' && tar -x -p -f - -C '/d d.sdr/new' -I gzip && exec cat >/dev/null"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := extractCommand("/d d.sdr/new", tc.o); got != tc.want {
				t.Errorf("got  %s\nwant %s", got, tc.want)
			}
		})
	}
}

// TestHBASyntaxPerVersion: a rule with a regular expression for the user,
// and a continued line, mean different things before and from 16.
func TestHBASyntaxPerVersion(t *testing.T) {
	conns := hbaConns("sdr_repl", "postgres", []string{"10.0.2.10"})
	regexUser := "host replication /^sdr trust\n"             // 16: may match sdr_repl; 15: a role named "/^sdr"
	regexLine := "host replication /^sdr 10.0.2.0/24 trust\n" // the same with an address
	continued := "host replication \\\nsdr_repl 10.0.2.10/32 trust\n"
	include := "include_if_exists extra.conf\n"
	cases := []struct {
		name       string
		content    string
		v          pgVersion
		wantBefore int
		wantErr    bool
	}{
		{"regex user, 15: a plain name that is not sdr's", regexLine, 150018, 0, false},
		{"regex user, 16: may match, so the block goes before it", regexLine, 160004, 1, false},
		{"regex user without address, 13", regexUser, 130016, 0, false},
		{"continued line, 15: two records PostgreSQL would refuse", continued, 150018, 0, false},
		{"continued line, 17: a rule for sdr_repl itself", continued, 170002, 0, true},
		{"include, 14: not a record", include, 140013, 0, false},
		{"include, 16: may hold anything", include, 160004, 1, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, err := placeHBABlock("pg_hba.conf", tc.content, "pair1", conns, features(tc.v).hbaSyntax())
			if (err != nil) != tc.wantErr {
				t.Fatalf("placeHBABlock error %v, want error %v", err, tc.wantErr)
			}
			if err == nil && p.Before != tc.wantBefore {
				t.Errorf("block before line %d, want %d", p.Before, tc.wantBefore)
			}
		})
	}
}
