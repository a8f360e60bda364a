#!/bin/sh
# Builds the test bed in ${1:-/tmp/sdr-demo}, shows it, and leaves it running.
# Take it down with: go run ./e2e/cmd/sdr-bed down --dir ${1:-/tmp/sdr-demo}
set -eu
cd "$(dirname "$0")/../.."
dir=${1:-/tmp/sdr-demo}
go build -o /tmp/sdr-bed ./e2e/cmd/sdr-bed
/tmp/sdr-bed up --dir "$dir"
. "$dir/bed.env"
for n in dc1-a dc1-b dc2-a dc2-b; do
	printf '%s: ' "$n"
	/tmp/sdr-bed sql --dir "$dir" "$n" "select current_setting('port') || ' in_recovery=' || pg_is_in_recovery()"
done
/tmp/sdr-bed sql --dir "$dir" dc1-a "select application_name, state from pg_stat_replication"
echo "config: $SDR_CONFIG"
