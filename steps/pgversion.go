package steps

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/pgsdr/sdr/cluster"
)

// PostgreSQL versions. sdr supports 13 to 17; everything that differs
// between them and matters to the SQL, the files and the commands sdr
// uses is decided here, from the major version, and nowhere else.
//
// What differs, and what sdr does about it:
//
//	major  difference                                         sdr
//	<13    no wal_keep_size (wal_keep_segments);              refuses the server
//	       no pg_replication_slots.wal_status
//	13-14  stats_temp_directory, a directory the server      the pre-swap check asks for it and
//	       needs at start (Debian keeps it in /run)           checks that its parent exists
//	15     in-place tablespaces (a location relative to the  nothing to switch: a relative location
//	       data directory, allow_in_place_tablespaces)        is copied inside the data directory
//	16     pg_hba.conf: include directives, regular           parses them as PostgreSQL 16 does;
//	       expressions in the database and user fields,       before 16 "/x" is a plain name and a
//	       continuation lines; pg_hba_file_rules.file_name    trailing "\" is part of the token;
//	                                                          errors name the included file
//	15     pg_basebackup --compress=server-METHOD[:LEVEL]:    copy.compress is refused before 15, and
//	       compression by the server (before 15 only -Z,       when the primary's build lacks the
//	       the client's own gzip)                             method (pg_settings: wal_compression)
//	17     pg_replication_slots.invalidation_reason           read and shown when a slot lost WAL
//
// The same in every supported version, so not switched on: the columns
// of pg_stat_wal_receiver sdr reads (sender_host and sender_port exist
// from 11; received_lsn became written_lsn/flushed_lsn in 13, and sdr
// reads pg_last_wal_receive_lsn() instead), pg_stat_replication,
// pg_walfile_name (it fails during recovery in every version, so it is
// only called on a server that is not in recovery), pg_basebackup's
// -X stream, -c fast, -S, -P, -d and --tablespace-mapping (basebackupArgs;
// --compress only with copy.compress, from 15), --max-rate, and the tar
// stream of the fan-out copy (-D - -F tar -X fetch: WAL streaming, and so
// -S, are not allowed with a tar on stdout, and neither are tablespaces
// besides the default ones), pg_ctl's start,
// stop and status (service.go), postgres -C, and the pg_checkpoint role of
// 15 (sdr runs no CHECKPOINT as a non-superuser).

// pgVersion is a server version as server_version_num: 150018 for 15.18.
// 0 means unknown.
type pgVersion int

// Supported majors.
const (
	minMajor = 13 // wal_keep_size, pg_replication_slots.wal_status
	maxMajor = 17 // the newest major sdr knows; newer ones run with its rules
)

// Major is the major version (15).
func (v pgVersion) Major() int { return int(v) / 10000 }

func (v pgVersion) String() string {
	if v == 0 {
		return "unknown"
	}
	return fmt.Sprintf("%d.%d", v.Major(), int(v)%10000)
}

// serverVersionRE reads the server_version parameter: "15.18 (Debian
// 15.18-0+deb12u1)", "16.4", "17beta2", "17rc1".
var serverVersionRE = regexp.MustCompile(`^(\d+)(?:\.(\d+))?`)

// parseServerVersion reads a server_version string (13 and later: major
// and minor).
func parseServerVersion(s string) (pgVersion, error) {
	m := serverVersionRE.FindStringSubmatch(s)
	if m == nil {
		return 0, fmt.Errorf("cannot read a PostgreSQL version from %q", s)
	}
	major, _ := strconv.Atoi(m[1])
	minor := 0
	if m[2] != "" {
		minor, _ = strconv.Atoi(m[2])
	}
	if major < 10 {
		// 9.6.24 is server_version_num 90624: major 9, "minor" 6.
		return 0, fmt.Errorf("PostgreSQL %s is older than %d", s, minMajor)
	}
	return pgVersion(major*10000 + minor), nil
}

// versionOf is the version of the server c is connected to, from the
// server_version it reported at login; 0 when it cannot be read.
func versionOf(c *pgx.Conn) pgVersion {
	if c == nil || c.PgConn() == nil {
		return 0
	}
	v, err := parseServerVersion(c.PgConn().ParameterStatus("server_version"))
	if err != nil {
		return 0
	}
	return v
}

// checkSupported refuses a server older than PostgreSQL 13 (what names it
// in the error, like "the primary dc1-a"). A newer major than sdr knows
// is accepted: its rules are those of the newest known major.
func checkSupported(what string, v pgVersion) error {
	if v != 0 && v.Major() < minMajor {
		return permanent(fmt.Errorf("%s runs PostgreSQL %s: sdr supports PostgreSQL %d to %d (it needs wal_keep_size and "+
			"pg_replication_slots.wal_status, which came in %d); upgrade it first", what, v, minMajor, maxMajor, minMajor))
	}
	return nil
}

// pgFeatures is what sdr does differently by major version. See the
// table at the top of this file.
type pgFeatures struct {
	Major int
	// HBA16 is PostgreSQL 16's pg_hba.conf: include directives, regular
	// expressions ("/...") in the database and user fields, continuation
	// lines, and pg_hba_file_rules.file_name.
	HBA16 bool
	// SlotInvalidationReason: pg_replication_slots.invalidation_reason.
	SlotInvalidationReason bool
	// StatsTempDirectory: the setting exists, and names a directory the
	// server needs when it starts.
	StatsTempDirectory bool
	// ServerCompression: pg_basebackup --compress=server-METHOD[:LEVEL],
	// compression by the server before the copy crosses the network.
	ServerCompression bool
}

// features returns the rules for v. An unknown version (0) gets the rules
// of the oldest supported major, whose SQL every supported server runs; a
// major newer than sdr knows gets those of the newest.
func features(v pgVersion) pgFeatures {
	m := v.Major()
	switch {
	case v == 0 || m < minMajor:
		m = minMajor
	case m > maxMajor:
		m = maxMajor
	}
	return pgFeatures{
		Major:                  m,
		HBA16:                  m >= 16,
		SlotInvalidationReason: m >= 17,
		StatsTempDirectory:     m <= 14,
		ServerCompression:      m >= 15,
	}
}

// hbaSyntax is how pg_hba.conf is read by this version.
func (f pgFeatures) hbaSyntax() hbaSyntax {
	return hbaSyntax{Includes: f.HBA16, Regex: f.HBA16, Continuation: f.HBA16}
}

// hbaErrorsSQL lists the errors PostgreSQL found in pg_hba.conf as
// "<file>:<line>: <error>" (the file only from 16, where an included file
// can hold the line).
func (f pgFeatures) hbaErrorsSQL() string {
	file := `''`
	if f.HBA16 {
		file = `coalesce(file_name, '') || ':'`
	}
	return `SELECT ` + file + ` || line_number::text || ': ' || error FROM pg_hba_file_rules WHERE error IS NOT NULL`
}

// slotSQL reads one slot: type, temporary, wal_status, whether a process
// holds it, and (17) why it was invalidated.
func (f pgFeatures) slotSQL() string {
	reason := `''`
	if f.SlotInvalidationReason {
		reason = `coalesce(invalidation_reason, '')`
	}
	return `SELECT slot_type, temporary, coalesce(wal_status, ''), active, ` + reason + ` FROM pg_replication_slots WHERE slot_name = $1`
}

// basebackupArgs are pg_basebackup's arguments (shell-quoted) for a copy
// into dir from the server conninfo names, through slot ("" for none),
// with each tablespace's location mapped from [0] to [1]: the WAL
// streamed alongside (-X stream), a fast checkpoint, progress on stderr,
// and wan's compression and rate limit (the copy from the primary only;
// checkCopyOptions has accepted them). With a plain-format copy and
// server compression, pg_basebackup decompresses what it receives.
func (f pgFeatures) basebackupArgs(dir, conninfo, slot string, mapping [][2]string, wan cluster.CopyOptions) []string {
	args := []string{"-D", q(dir), "-X", "stream", "-c", "fast", "-P", "-d", q(conninfo)}
	if slot != "" {
		args = append(args, "-S", q(slot))
	}
	for _, m := range mapping {
		args = append(args, q(tablespaceMappingArg(m[0], m[1])))
	}
	return append(args, f.wanArgs(wan)...)
}

// tarStreamArgs are pg_basebackup's arguments for the fan-out copy: one
// tar stream on stdout (-D - -F tar), with the WAL from the backup's start
// to its end inside it (-X fetch; streaming the WAL, and so a slot, is
// not possible with a tar on stdout, and the pair's slot on the primary
// keeps the WAL meanwhile), a fast checkpoint, progress on stderr, and
// wan's options. A compressed stream carries no backup manifest:
// pg_basebackup cannot add one to a compressed tar.
func (f pgFeatures) tarStreamArgs(conninfo string, wan cluster.CopyOptions) []string {
	args := []string{"-D", "-", "-F", "tar", "-X", "fetch", "-c", "fast", "-P", "-d", q(conninfo)}
	if _, _, ok := wan.CompressMethod(); ok {
		args = append(args, "--no-manifest")
	}
	return append(args, f.wanArgs(wan)...)
}

// wanArgs are the compression and rate limit of a copy from the primary.
func (f pgFeatures) wanArgs(wan cluster.CopyOptions) []string {
	var args []string
	if method, level, ok := wan.CompressMethod(); ok {
		c := "--compress=server-" + method
		if level > 0 {
			c += ":" + strconv.Itoa(level)
		}
		args = append(args, c)
	}
	if kb := wan.MaxRateKB(); kb > 0 {
		args = append(args, "--max-rate="+strconv.Itoa(kb))
	}
	return args
}

// serverCompressionSQL lists what the server was built to compress with,
// as the values wal_compression accepts (15 and later: pglz, lz4 and
// zstd when built with them; a boolean before 15, with no values).
const serverCompressionSQL = `SELECT coalesce(array_to_string(enumvals, ','), '') FROM pg_settings WHERE name = 'wal_compression'`

// checkCopyOptions refuses copy options the primary cannot honour:
// server-side compression before PostgreSQL 15, and a method the
// primary's build lacks. serverMethods is serverCompressionSQL's answer.
// gzip (zlib) is in every usual build and wal_compression does not show
// it: it is accepted, and a build without it fails the copy with
// pg_basebackup's own error.
func (f pgFeatures) checkCopyOptions(o cluster.CopyOptions, primary string, v pgVersion, serverMethods string) error {
	method, _, ok := o.CompressMethod()
	if !ok {
		return nil
	}
	if !f.ServerCompression {
		return permanent(fmt.Errorf("copy.compress is %s, but the primary %s runs PostgreSQL %s: pg_basebackup compresses on the server "+
			"only from PostgreSQL 15; remove copy.compress (or upgrade the pair)", o.Compress, primary, v))
	}
	if method == "gzip" {
		return nil
	}
	for _, m := range strings.Split(serverMethods, ",") {
		if strings.TrimSpace(m) == method {
			return nil
		}
	}
	return permanent(fmt.Errorf("copy.compress is %s, but the PostgreSQL build of the primary %s cannot compress with %s "+
		"(its wal_compression accepts %q): use another method, or remove copy.compress", o.Compress, primary, method, serverMethods))
}

// extractCommand is the command that unpacks the fan-out copy's tar
// stream, read on stdin, into dir (which it creates, mode 0700), keeping
// the archive's permissions; a compressed stream is decompressed by the
// program of copy.compress's method, run by tar. What follows the
// archive's end is read and dropped, so that the relay never writes to a
// command that has stopped reading.
func extractCommand(dir string, wan cluster.CopyOptions) string {
	cmd := "mkdir -m 700 -- " + q(dir) + " && tar -x -p -f - -C " + q(dir)
	if method, _, ok := wan.CompressMethod(); ok {
		cmd += " -I " + q(decompressor(method))
	}
	return cmd + " && exec cat >/dev/null"
}

// decompressor is the program that undoes a compression method.
func decompressor(method string) string {
	return map[string]string{"gzip": "gzip", "lz4": "lz4", "zstd": "zstd"}[method]
}

// copySettings are the settings the pre-swap check reads with postgres -C
// from the configuration a rebuilt node will start with.
// The files ssl names are read (sslFileSettings) only when ssl is on.
func (f pgFeatures) copySettings() []string {
	s := []string{"data_directory", "config_file", "hba_file", "ident_file", "port", "unix_socket_directories",
		"hot_standby", "primary_conninfo", "primary_slot_name", "external_pid_file", "ssl"}
	if f.StatsTempDirectory {
		s = append(s, "stats_temp_directory")
	}
	return s
}

// sslFileSettings are the files a server with ssl on needs (copyPaths).
var sslFileSettings = []string{"ssl_cert_file", "ssl_key_file", "ssl_ca_file", "ssl_crl_file"}
