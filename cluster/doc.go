// Package cluster is sdr's view of a DR pair: the config model, access to
// each node, and the plumbing to reach PostgreSQL on it.
//
// Config is loaded from one YAML file (Load) that is the same on both sides;
// docs/config.md describes every field. Validate checks it and reports the
// first problem as a *ConfigError naming the field ("clusters.dc2.nodes[1].data_dir").
// Inputs gives the settings that change what the DR steps do, for the
// workflow's input fingerprint; it never holds a secret. A node may take
// its settings from its cluster's defaults, keep its configuration in
// config_dir, name its service manager (Service), and have a separate
// replication_host. addr.go writes a host (name, IPv4, IPv6) in the form
// each place needs: SSH, known_hosts, libpq, pg_hba.conf.
//
// Access runs shell commands and moves files on one node: over SSH
// (golang.org/x/crypto/ssh, host keys checked against known_hosts) or, for
// nodes marked local, with os/exec. Both pass the same conformance tests.
// Over SSH every command runs under /bin/sh with its output framed by
// random markers, so a login shell's startup output never mixes in
// (frame.go). Start keeps a command's stdin open for as long as sdr lives.
// A Pool opens one Access per node on first use.
//
// Typed node primitives act on a node through an Access, each in one
// remote sh script so that its checks and its action cannot be separated:
// StatPaths (path and machine identity), ReadControlData and the pure
// ParseControlData, ProbeDataDir (everything about a data directory at
// once), RenameAll / RenameNoReplace (no replace, no copy, refused while a
// postmaster runs), RemoveTree / EmptyTrash (delete through a trash),
// RunLong / KillTagged (long commands that end with the run, and what a
// killed run left) and LockNode (a lock held by the node for as long as sdr
// lives), ShowSettings (postgres -C: settings as a server would have them).
// Their refusals are the sentinels of errors.go.
//
// sdr talks to PostgreSQL with pgx through the node's Access: ConnectAdmin
// dials the node's Unix socket through the SSH connection (peer
// authentication as the SSH user), and ConnectReplUser checks the
// replication credentials over TCP from a node's point of view.
// ForwardUnix gives a program on one node (pg_rewind) a Unix socket that
// leads to another node's socket through sdr's own SSH connections
// (Access.ListenUnix: remote streamlocal forwarding).
//
// ReplaceBlock and friends edit sdr's marked blocks in files shared with
// people (pg_hba.conf, postgresql.auto.conf), keeping every other line.
package cluster
