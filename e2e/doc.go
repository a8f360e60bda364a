// Package e2e holds sdr's end-to-end tests: real PostgreSQL 15 and a real
// OpenSSH server on loopback (built by package bed), driven through the
// built sdr binary. They run only with SDR_E2E=1 (make e2e), as root: the
// bed installs postgresql-15 and openssh-server when they are missing and
// runs PostgreSQL as the postgres OS user.
package e2e
