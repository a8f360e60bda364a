// Package store keeps sdr's checkpoints in a bbolt file.
//
// The file (mode 0600) holds a schema version and the DR pair's name, one
// record per workflow (start/primary, start/standby, ...), the DR state of
// each side, and the history of every state transition with its time and
// run id. Every change is one bbolt transaction. The file is opened for
// each transaction and closed again, so `sdr status` can read it while a
// run is going on.
//
// One run at a time holds the run lock, an advisory lock on "<file>.lock"
// that the kernel releases when its holder dies, so a lock left by a killed
// run is taken over by the next run.
//
// While a step reports progress, the run keeps its last report in the
// sidecar file "<file>.progress" (ProgressFile), replaced atomically about
// once a second; Snapshot shows it only while the run that wrote it holds
// the run lock.
package store
