package steps

import (
	"reflect"
	"testing"

	"github.com/pgsdr/sdr/workflow"
)

func TestPlanNodeBuild(t *testing.T) {
	replaceable := Verdict{Kind: DirSdrCopy, Replace: true}
	refused := Verdict{Kind: DirDiverged, Reason: "DR node dc2-a: data directory /pg is on timeline 2"}
	cases := []struct {
		name      string
		obs       buildObs
		want      buildAction
		wantErr   bool
		permanent bool
	}{
		{"fresh node", buildObs{Verdict: replaceable}, actCopy, false, false},
		{"fresh node, missing data directory", buildObs{Verdict: Verdict{Kind: DirMissing, Replace: true}}, actCopy, false, false},
		{"refused data directory is never copied over", buildObs{Verdict: refused}, "", true, true},
		{"saved, copy not complete", buildObs{Phase: phaseSaved, CopyID: "r1/dc2-a", Verdict: replaceable}, actCopy, false, false},
		{"copy of another run in new/: copy again", buildObs{Phase: phaseSaved, CopyID: "r2/dc2-a", NewComplete: "r1/dc2-a", Verdict: replaceable}, actCopy, false, false},
		{"copied: configure, never copy", buildObs{Phase: phaseCopied, CopyID: "r1/dc2-a", NewComplete: "r1/dc2-a", Verdict: replaceable}, actConfigure, false, false},
		{"configured and ready: swap", buildObs{Phase: phaseConfigured, CopyID: "r1/dc2-a", NewComplete: "r1/dc2-a", NewReady: true, Verdict: replaceable}, actSwap, false, false},
		{"configured but the node disagrees: configure again", buildObs{Phase: phaseConfigured, CopyID: "r1/dc2-a", NewComplete: "r1/dc2-a", Verdict: replaceable}, actConfigure, false, false},
		{"recorded copied but new.complete gone: copy again", buildObs{Phase: phaseCopied, CopyID: "r1/dc2-a", Verdict: replaceable}, actCopy, false, false},
		{"swap cut short after the old directory moved away", buildObs{Phase: phaseConfigured, CopyID: "r1/dc2-a", NewComplete: "r1/dc2-a", NewReady: true,
			Verdict: Verdict{Kind: DirMissing, Replace: true}}, actSwap, false, false},
		{"swapped: start", buildObs{Phase: phaseSwapped, CopyID: "r1/dc2-a", DataCopy: "r1/dc2-a", Verdict: replaceable}, actStart, false, false},
		{"swapped, recorded configured (cut before the record)", buildObs{Phase: phaseConfigured, CopyID: "r1/dc2-a", DataCopy: "r1/dc2-a", Verdict: replaceable}, actStart, false, false},
		{"started and streaming", buildObs{Phase: phaseStarted, CopyID: "r1/dc2-a", DataCopy: "r1/dc2-a", Running: true, InRecovery: true, Verdict: replaceable}, actDone, false, false},
		{"this run's copy was promoted", buildObs{Phase: phaseStarted, CopyID: "r1/dc2-a", DataCopy: "r1/dc2-a", Running: true, Verdict: refused}, "", true, true},
		{"something restarted the old directory", buildObs{Phase: phaseSaved, CopyID: "r1/dc2-a", Running: true, InRecovery: true, Verdict: replaceable}, "", true, false},
		{"cascade made from an older main standby copy is copied again", buildObs{Phase: phaseStarted, CopyID: "r1/dc2-b", DataCopy: "r1/dc2-b", DataFrom: "r0/dc2-a",
			WantFrom: "r1/dc2-a", Verdict: replaceable}, actCopy, false, false},
		{"cascade made from the current main standby copy", buildObs{Phase: phaseStarted, CopyID: "r1/dc2-b", DataCopy: "r1/dc2-b", DataFrom: "r1/dc2-a",
			WantFrom: "r1/dc2-a", Running: true, InRecovery: true, Verdict: replaceable}, actDone, false, false},
		{"an earlier run's copy in place is copied again (restart)", buildObs{DataCopy: "r0/dc2-a", Verdict: replaceable}, actCopy, false, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.obs.Node = "dc2-a"
			got, err := planNodeBuild(c.obs)
			if (err != nil) != c.wantErr || got != c.want {
				t.Fatalf("planNodeBuild = %q, %v; want %q (error %v)", got, err, c.want, c.wantErr)
			}
			if err != nil && workflow.IsPermanent(err) != c.permanent {
				t.Errorf("permanent = %v, want %v (%v)", workflow.IsPermanent(err), c.permanent, err)
			}
		})
	}
}

func TestPlanSwap(t *testing.T) {
	base := swapObs{DataDir: "/pg/d", DataExist: true, Keep: "/pg/d.sdr/diverged-r1", Old: "/pg/d.sdr/old", New: "/pg/d.sdr/new", Trash: "/pg/d.sdr/trash/data-r1"}
	with := func(mut func(o *swapObs)) swapObs { o := base; mut(&o); return o }
	cases := []struct {
		name    string
		obs     swapObs
		want    []renameOp
		wantErr bool
	}{
		{"missing data directory", with(func(o *swapObs) { o.DataExist, o.Verdict = false, Verdict{Kind: DirMissing, Replace: true} }),
			[]renameOp{{"/pg/d.sdr/new", "/pg/d"}}, false},
		{"empty data directory goes to the trash", with(func(o *swapObs) { o.Verdict = Verdict{Kind: DirMissing, Replace: true} }),
			[]renameOp{{"/pg/d", "/pg/d.sdr/trash/data-r1"}, {"/pg/d.sdr/new", "/pg/d"}}, false},
		{"the node's previous cluster is kept as old", with(func(o *swapObs) { o.Verdict = Verdict{Kind: DirOtherCluster, Replace: true} }),
			[]renameOp{{"/pg/d", "/pg/d.sdr/old"}, {"/pg/d.sdr/new", "/pg/d"}}, false},
		{"an earlier sdr copy when old is already kept goes to the trash", with(func(o *swapObs) {
			o.Verdict, o.OldExists = Verdict{Kind: DirSdrCopy, Replace: true}, true
		}), []renameOp{{"/pg/d", "/pg/d.sdr/trash/data-r1"}, {"/pg/d.sdr/new", "/pg/d"}}, false},
		{"another cluster when old is already kept: refuse", with(func(o *swapObs) {
			o.Verdict, o.OldExists = Verdict{Kind: DirOtherCluster, Replace: true}, true
		}), nil, true},
		{"diverged, named: kept aside, never in old or trash", with(func(o *swapObs) {
			o.Verdict, o.OldExists = Verdict{Kind: DirDiverged, Replace: true, KeepAside: true}, true
		}), []renameOp{{"/pg/d", "/pg/d.sdr/diverged-r1"}, {"/pg/d.sdr/new", "/pg/d"}}, false},
		{"refused directory", with(func(o *swapObs) { o.Verdict = Verdict{Kind: DirPrimaryNode, Reason: "no"} }), nil, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := planSwap("dc2-a", c.obs)
			if (err != nil) != c.wantErr || !reflect.DeepEqual(got, c.want) {
				t.Fatalf("planSwap = %v, %v; want %v (error %v)", got, err, c.want, c.wantErr)
			}
		})
	}
}

func TestTablespaceSwap(t *testing.T) {
	const kept = "/ts/a.dc2-a.sdr/diverged-r1-dc2-a"
	cases := []struct {
		name            string
		keep            string
		live, newc, old bool
		want            []renameOp
	}{
		{"first build", "", false, true, false, []renameOp{{"/ts/a.dc2-a.sdr/new", "/ts/a.dc2-a"}}},
		{"rebuild keeps the old copy until 9_finish", "", true, true, false,
			[]renameOp{{"/ts/a.dc2-a", "/ts/a.dc2-a.sdr/old"}, {"/ts/a.dc2-a.sdr/new", "/ts/a.dc2-a"}}},
		{"old already kept: the current copy goes to the trash", "", true, true, true,
			[]renameOp{{"/ts/a.dc2-a", "/ts/trash/x"}, {"/ts/a.dc2-a.sdr/new", "/ts/a.dc2-a"}}},
		{"already swapped", "", true, false, true, nil},
		{"data directory kept aside: its tablespace is kept too, never old or trash", kept, true, true, false,
			[]renameOp{{"/ts/a.dc2-a", kept}, {"/ts/a.dc2-a.sdr/new", "/ts/a.dc2-a"}}},
		{"kept aside with an old copy there: still kept, not trashed", kept, true, true, true,
			[]renameOp{{"/ts/a.dc2-a", kept}, {"/ts/a.dc2-a.sdr/new", "/ts/a.dc2-a"}}},
		{"kept aside, no tablespace there", kept, false, true, false, []renameOp{{"/ts/a.dc2-a.sdr/new", "/ts/a.dc2-a"}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := tablespaceSwap("/ts/a.dc2-a", "/ts/trash/x", c.keep, c.live, c.newc, c.old)
			if !reflect.DeepEqual(got, c.want) {
				t.Fatalf("got %v, want %v", got, c.want)
			}
		})
	}
}

func TestTablespaceMaps(t *testing.T) {
	tss := []tablespace{{OID: "16384", Name: "one", Location: "/srv/ts/one"}, {OID: "16385", Name: "inplace", Location: "pg_tblspc/16385"}}
	main := tablespaceMaps(tss, "dc2-a", "dc2-a", true)
	if len(main) != 1 || main[0].Upstream != "/srv/ts/one" || main[0].Live != "/srv/ts/one.dc2-a" {
		t.Fatalf("main standby maps %+v", main)
	}
	casc := tablespaceMaps(tss, "dc2-b", "dc2-a", false)
	if len(casc) != 1 || casc[0].Upstream != "/srv/ts/one.dc2-a" || casc[0].Live != "/srv/ts/one.dc2-b" {
		t.Fatalf("cascade maps %+v", casc)
	}
	if got := tablespaceMappingArg("/a=b", "/c"); got != `--tablespace-mapping=/a\=b=/c` {
		t.Errorf("mapping arg %q", got)
	}
}

func TestConninfoValue(t *testing.T) {
	ci := `user=sdr_repl passfile=/x/pgpass channel_binding=prefer dbname=replication host=127.0.0.1 port=5432 application_name='sdr_p_dc2 a' fallback_application_name=walreceiver`
	if got := conninfoValue(ci, "application_name"); got != "sdr_p_dc2 a" {
		t.Errorf("application_name = %q", got)
	}
	if got := conninfoValue(ci, "port"); got != "5432" {
		t.Errorf("port = %q", got)
	}
	if got := conninfoValue(ci, "sslmode"); got != "" {
		t.Errorf("sslmode = %q", got)
	}
	if got := conninfoValue("application_name=sdr_p_n host=a application_name=mine", "application_name"); got != "mine" {
		t.Errorf("a key given twice = %q, want the last value (libpq's)", got)
	}
	if got := conninfoValue(`a='it\'s' b=2`, "a"); got != "it's" {
		t.Errorf("quoted = %q", got)
	}
}
