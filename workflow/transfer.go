package workflow

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Transfer is how much one part of a step moved and how long it took, as
// its progress reports said (the first report to the last): for example
// the pg_basebackup of one node. The runner keeps the last one of each
// part of each step as a value of the workflow's record
// (TransferValue), replacing the one before, so that a plan can estimate
// how long the next copy takes. It survives --restart like every value.
type Transfer struct {
	Bytes   int64
	Seconds float64
	Ended   time.Time
	RunID   string
}

// Rate is bytes per second (0 when unknown).
func (t Transfer) Rate() float64 {
	if t.Seconds <= 0 || t.Bytes <= 0 {
		return 0
	}
	return float64(t.Bytes) / t.Seconds
}

// String is how a transfer is saved.
func (t Transfer) String() string {
	return fmt.Sprintf("bytes=%d;seconds=%s;ended=%s;run=%s", t.Bytes, strconv.FormatFloat(t.Seconds, 'f', 3, 64),
		t.Ended.UTC().Format(time.RFC3339), t.RunID)
}

// ParseTransfer reads a saved transfer.
func ParseTransfer(s string) (Transfer, error) {
	var t Transfer
	f := map[string]string{}
	for _, kv := range strings.Split(s, ";") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return t, fmt.Errorf("saved transfer %q: %q is not key=value", s, kv)
		}
		f[k] = v
	}
	var err error
	if t.Bytes, err = strconv.ParseInt(f["bytes"], 10, 64); err != nil || t.Bytes < 0 {
		return Transfer{}, fmt.Errorf("saved transfer %q: bytes is not a number", s)
	}
	if t.Seconds, err = strconv.ParseFloat(f["seconds"], 64); err != nil || t.Seconds < 0 {
		return Transfer{}, fmt.Errorf("saved transfer %q: seconds is not a number", s)
	}
	if f["ended"] != "" {
		if t.Ended, err = time.Parse(time.RFC3339, f["ended"]); err != nil {
			return Transfer{}, fmt.Errorf("saved transfer %q: ended is not a time", s)
		}
	}
	t.RunID = f["run"]
	return t, nil
}

// TransferValue is the name of the value under which the runner keeps the
// last transfer of part in step.
func TransferValue(step, part string) string { return "transfer." + step + "." + part }

// LastTransfer returns the last transfer recorded for part of the running
// step (by an earlier run of it), if any.
func (rc *RunContext) LastTransfer(ctx context.Context, part string) (Transfer, bool, error) {
	v, ok, err := rc.Value(ctx, TransferValue(rc.Step, part))
	if err != nil || !ok {
		return Transfer{}, false, err
	}
	t, err := ParseTransfer(v)
	if err != nil {
		return Transfer{}, false, err
	}
	return t, true, nil
}

// minTransferSeconds: a part whose reports span less than this says
// little about a rate (a small copy reports once or twice) and is not kept.
const minTransferSeconds = 1.0

// transferValues turns the parts a step ended into the values to keep.
// A part that moved nothing, or whose reports span less than
// minTransferSeconds, is left out.
func transferValues(step, runID string, parts []PartProgress) map[string]string {
	out := map[string]string{}
	for _, p := range parts {
		secs := p.Updated.Sub(p.Started).Seconds()
		if p.Done <= 0 || secs < minTransferSeconds {
			continue
		}
		out[TransferValue(step, p.Part)] = Transfer{Bytes: p.Done, Seconds: secs, Ended: p.Updated, RunID: runID}.String()
	}
	return out
}
