package steps

import (
	"testing"
	"time"
)

func TestDecideStreamReady(t *testing.T) {
	since := time.Date(2026, 11, 21, 6, 11, 52, 0, time.UTC)
	after, before := since.Add(3*time.Second), since.Add(-time.Hour)
	const app, slot = "sdr_pair1_dc2a", "sdr_pair1_dc2a"
	streaming := walsenderObs{SlotExists: true, WalStatus: "reserved", ActivePID: 42, PID: 42, App: app, State: "streaming", BackendStart: &after}
	with := func(change func(o *walsenderObs)) walsenderObs {
		o := streaming
		change(&o)
		return o
	}
	tests := []struct {
		name          string
		obs           walsenderObs
		wantErr       bool
		wantPermanent bool
		mention       string
	}{
		{name: "new stream of the main standby", obs: streaming},
		{name: "old stream from before the step (a --restart rebuild not done yet)", obs: with(func(o *walsenderObs) { o.BackendStart = &before }),
			wantErr: true, mention: "before this run's pass began"},
		{name: "stream that started exactly at the mark does not count", obs: with(func(o *walsenderObs) { o.BackendStart = &since }),
			wantErr: true},
		{name: "start time unknown", obs: with(func(o *walsenderObs) { o.BackendStart = nil }), wantErr: true},
		{name: "new stream still catching up", obs: with(func(o *walsenderObs) { o.State = "catchup" }), wantErr: true, mention: "catchup"},
		{name: "slot held by the copy's pg_basebackup", obs: with(func(o *walsenderObs) { o.App = app + "_basebackup" }), wantErr: true, mention: "_basebackup"},
		{name: "nobody on the slot", obs: with(func(o *walsenderObs) { o.ActivePID, o.PID, o.App, o.State, o.BackendStart = 0, 0, "", "", nil }),
			wantErr: true, mention: "no walsender"},
		{name: "slot held by a process that is not in pg_stat_replication", obs: with(func(o *walsenderObs) { o.PID = 0 }), wantErr: true},
		{name: "slot dropped", obs: walsenderObs{}, wantErr: true, wantPermanent: true, mention: "no longer exists"},
		{name: "slot lost its WAL", obs: with(func(o *walsenderObs) { o.WalStatus = "lost" }), wantErr: true, wantPermanent: true, mention: "lost"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assertErr(t, decideStreamReady(tt.obs, app, slot, since), tt.wantErr, tt.wantPermanent, tt.mention)
		})
	}
}
