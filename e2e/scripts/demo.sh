#!/usr/bin/env bash
# make demo: build a sandbox DR pair on loopback (PostgreSQL 15 as the
# postgres OS user, a private sshd), run both starts at the same time,
# then show `sdr status` for each side. The sandbox keeps running; take it
# down with `make demo-down`.
#   usage: demo.sh SDR_BINARY [DIR]
set -euo pipefail
cd "$(dirname "$0")/../.."
sdr=${1:?usage: demo.sh SDR_BINARY [DIR]}
dir=${2:-/tmp/sdr-demo}
if [ "$(id -u)" != 0 ]; then
	echo "demo: run as root (it installs packages and runs PostgreSQL as the postgres user)" >&2
	exit 2
fi
bash e2e/scripts/install-deps.sh
mkdir -p bin
go build -o bin/sdr-bed ./e2e/cmd/sdr-bed
bin/sdr-bed up --dir "$dir"
. "$dir/bed.env"

echo "== loading sample data on the primary (pgbench -i -s 5)"
runuser -u postgres -- bash -c "cd /tmp && /usr/lib/postgresql/15/bin/pgbench -i -s 5 -q $(bin/sdr-bed sql --dir "$dir" dc1-a "select '-h ' || current_setting('unix_socket_directories') || ' -p ' || current_setting('port')") postgres" 2>&1 | tail -n 2

echo "== sdr start --role primary  and  sdr start --role standby, at the same time"
"$sdr" --config "$SDR_CONFIG" --state "$SDR_STATE_PRIMARY" --log-file "$SDR_LOG_PRIMARY" start --role primary --timeout 5m \
	> >(sed 's/^/[primary] /') 2>&1 &
p=$!
"$sdr" --config "$SDR_CONFIG" --state "$SDR_STATE_STANDBY" --log-file "$SDR_LOG_STANDBY" start --role standby --timeout 5m \
	> >(sed 's/^/[standby] /') 2>&1 &
s=$!
rc=0
wait $p || rc=$?
wait $s || rc=$?
sleep 0.2

echo
echo "== sdr status (primary side)"
"$sdr" --config "$SDR_CONFIG" --state "$SDR_STATE_PRIMARY" status
echo
echo "== sdr status (standby side)"
"$sdr" --config "$SDR_CONFIG" --state "$SDR_STATE_STANDBY" status
echo
echo "sandbox: $dir (config $SDR_CONFIG); take it down with: make demo-down"
exit $rc
