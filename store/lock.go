package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Holder describes the run that holds the run lock.
type Holder struct {
	PID     int       `json:"pid"`
	Host    string    `json:"host"`
	Started time.Time `json:"started"`
	RunID   string    `json:"run_id,omitempty"`
	Command string    `json:"command,omitempty"`
}

// Alive reports whether the holder's process still exists on this host.
func (h *Holder) Alive() bool {
	if h == nil || h.PID <= 0 {
		return false
	}
	if host, _ := os.Hostname(); host != h.Host {
		return true // cannot tell; assume it is alive
	}
	err := syscall.Kill(h.PID, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// LockedError names the run that holds the lock.
type LockedError struct {
	Path   string
	Holder *Holder
}

func (e *LockedError) Error() string {
	if e.Holder == nil {
		return fmt.Sprintf("another sdr run holds %s", e.Path)
	}
	return fmt.Sprintf("another sdr run (pid %d on host %s, started %s) holds %s",
		e.Holder.PID, e.Holder.Host, e.Holder.Started.Local().Format(time.RFC3339), e.Path)
}

func (e *LockedError) Unwrap() error { return ErrLocked }

// Lock is a held run lock.
type Lock struct {
	f *os.File
	// TookOver is the dead holder whose lock this run took over, if any.
	TookOver *Holder
}

// LockPath is the lock file of a state file.
func LockPath(statePath string) string { return statePath + ".lock" }

// ReadHolder reads the holder recorded in the lock file, nil if none.
func ReadHolder(statePath string) (*Holder, error) {
	raw, err := os.ReadFile(LockPath(statePath))
	if errors.Is(err, os.ErrNotExist) || (err == nil && len(raw) == 0) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var h Holder
	if err := json.Unmarshal(raw, &h); err != nil {
		return nil, fmt.Errorf("lock file %s: %w", LockPath(statePath), err)
	}
	return &h, nil
}

// Acquire takes the run lock of the state file, waiting at most wait
// (polling, bounded) for a holder that is about to finish. A lock whose
// holder died is free at the kernel level and is taken over; its old
// holder is reported in Lock.TookOver.
func Acquire(statePath string, me Holder, wait time.Duration) (*Lock, error) {
	path := LockPath(statePath)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("while opening lock file %s: %w", path, err)
	}
	deadline := time.Now().Add(wait)
	for {
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, unix.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("while locking %s: %w", path, err)
		}
		if time.Now().After(deadline) {
			h, _ := ReadHolder(statePath)
			f.Close()
			return nil, &LockedError{Path: statePath, Holder: h}
		}
		time.Sleep(100 * time.Millisecond)
	}
	l := &Lock{f: f}
	raw, _ := io.ReadAll(f)
	var old Holder
	if len(raw) > 0 && json.Unmarshal(raw, &old) == nil && old.PID != 0 {
		l.TookOver = &old
	}
	data, _ := json.Marshal(me)
	if err := f.Truncate(0); err == nil {
		_, err = f.WriteAt(data, 0)
		if err == nil {
			err = f.Sync()
		}
	}
	if err != nil {
		l.Release()
		return nil, fmt.Errorf("while writing lock file %s: %w", path, err)
	}
	return l, nil
}

// LockProbe is what ProbeLock found.
type LockProbe struct {
	// Held: a live process holds the run lock now.
	Held bool
	// Holder is the run recorded in the lock file: the live holder when
	// Held, otherwise a run that ended without releasing the lock (killed,
	// its terminal closed, the machine restarted); nil when none.
	Holder *Holder
}

// ProbeLock tells whether a live run holds the state file's run lock,
// without taking it and without creating anything: it asks the kernel for
// a shared lock on the lock file and drops it at once. A holder recorded
// for another host counts as held (the kernel lock says nothing about
// other hosts).
func ProbeLock(statePath string) (LockProbe, error) {
	path := LockPath(statePath)
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return LockProbe{}, nil
	}
	if err != nil {
		return LockProbe{}, fmt.Errorf("while opening lock file %s: %w", path, err)
	}
	defer f.Close()
	var p LockProbe
	switch err := unix.Flock(int(f.Fd()), unix.LOCK_SH|unix.LOCK_NB); {
	case err == nil:
		_ = unix.Flock(int(f.Fd()), unix.LOCK_UN)
	case errors.Is(err, unix.EWOULDBLOCK):
		p.Held = true
	default:
		return LockProbe{}, fmt.Errorf("while probing lock file %s: %w", path, err)
	}
	h, err := ReadHolder(statePath)
	if err != nil && !p.Held {
		return p, err
	}
	p.Holder = h
	if !p.Held && h != nil {
		if host, _ := os.Hostname(); host != h.Host {
			p.Held = true
		}
	}
	return p, nil
}

// Release empties the lock file and drops the lock.
func (l *Lock) Release() error {
	if l == nil || l.f == nil {
		return nil
	}
	_ = l.f.Truncate(0)
	err := unix.Flock(int(l.f.Fd()), unix.LOCK_UN)
	if cerr := l.f.Close(); err == nil {
		err = cerr
	}
	l.f = nil
	return err
}
