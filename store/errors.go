package store

import "errors"

// Errors from opening a state file.
var (
	// ErrCorrupt: the file is not a readable bbolt database (truncated, garbage).
	ErrCorrupt = errors.New("state file is corrupt or not a bbolt database")
	// ErrForeign: a bbolt database that sdr did not write.
	ErrForeign = errors.New("not an sdr state file")
	// ErrSchema: an sdr state file of a schema this sdr does not know.
	ErrSchema = errors.New("unsupported state file schema")
	// ErrOtherPair: the state file belongs to a different DR pair.
	ErrOtherPair = errors.New("state file belongs to another DR pair")
	// ErrOtherSide: the state file belongs to the other side of the pair
	// (written by a run with the other --role). Also returned by Update for
	// a role other than the file's.
	ErrOtherSide = errors.New("state file belongs to the other side of the pair")
	// ErrOtherCluster: the state file belongs to the other cluster of the
	// pair (its stamp), whatever role that cluster plays now.
	ErrOtherCluster = errors.New("state file belongs to the other cluster of the pair")
	// ErrBusy: the bbolt file stayed locked by another process past the timeout.
	ErrBusy = errors.New("state file is busy")
)

// Errors from taking the run lock.
var (
	// ErrLocked is wrapped by *LockedError.
	ErrLocked = errors.New("another sdr run holds the state file")
)
