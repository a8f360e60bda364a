// Package e2e holds sdr's end-to-end tests: real PostgreSQL 15 and a real
// OpenSSH server on loopback (built by package bed), driven through the
// built sdr binary. They run only with SDR_E2E=1 (make e2e), as root: the
// bed installs postgresql-15 and openssh-server when they are missing and
// runs PostgreSQL as the postgres OS user.
//
// TestStartPair and TestKillDuringBasebackup run over two beds
// (bedFlavours): the pg_ctl bed at 127.0.0.1, and a Debian bed
// (pg_createcluster clusters with their configuration in
// /etc/postgresql/15/<cluster>, run by pg_ctlcluster) whose nodes sdr
// reaches by the name localhost and at ::1. No systemd runs where these
// tests run, so pg_ctlcluster runs pg_ctl itself; sdr's systemd service
// manager is covered by unit tests only.
package e2e
