#!/bin/sh
# Installs what the sdr test bed needs on a fresh Debian 12 machine (as root):
# PostgreSQL 15 server binaries and OpenSSH, and unlocks the postgres OS user
# (OpenSSH with UsePAM no refuses a locked account). The Go library does the
# same in bed.EnsurePackages; this is for running by hand.
set -eu
if [ ! -x /usr/lib/postgresql/15/bin/initdb ] || [ ! -x /usr/sbin/sshd ]; then
	apt-get update
	DEBIAN_FRONTEND=noninteractive apt-get install -y postgresql-15 openssh-server
fi
case "$(getent shadow postgres | cut -d: -f2)" in
'!'*) usermod -p '*' postgres ;;
esac
