package steps

import "testing"

func TestDecideRole(t *testing.T) {
	// ours is a role sdr created for this pair with the right privileges and password.
	ours := roleObs{Exists: true, Login: true, Replication: true, Comment: roleComment("pair1"), PasswordMatches: true}
	with := func(base roleObs, change func(o *roleObs)) roleObs {
		change(&base)
		return base
	}
	foreign := with(ours, func(o *roleObs) { o.Comment = "" })
	otherPair := with(ours, func(o *roleObs) { o.Comment = roleComment("pair2") })
	tests := []struct {
		name    string
		obs     roleObs
		reset   bool
		want    roleAction
		wantErr bool
		mention string
	}{
		{name: "missing role is created", obs: roleObs{}, want: roleAction{Create: true}},
		{name: "missing role is created, reset flag or not", obs: roleObs{}, reset: true, want: roleAction{Create: true}},
		{name: "sdr's role as it should be: nothing", obs: ours},
		{name: "sdr's role, other password: set", obs: with(ours, func(o *roleObs) { o.PasswordMatches = false }), want: roleAction{SetPassword: true}},
		{name: "sdr's role lost LOGIN: set", obs: with(ours, func(o *roleObs) { o.Login = false }), want: roleAction{SetAttrs: true}},
		{name: "sdr's role gained CREATEDB: taken away", obs: with(ours, func(o *roleObs) { o.CreateDB = true }), want: roleAction{SetAttrs: true}},
		{name: "sdr's role gained CREATEROLE and BYPASSRLS: taken away", obs: with(ours, func(o *roleObs) { o.CreateRole, o.BypassRLS = true, true }),
			want: roleAction{SetAttrs: true}},
		{name: "sdr's role made superuser: refused", obs: with(ours, func(o *roleObs) { o.Super = true }), wantErr: true, mention: "superuser"},
		{name: "superuser role: refused", obs: with(foreign, func(o *roleObs) { o.Super = true }), wantErr: true, mention: "superuser"},
		{name: "superuser role: refused even with reset", obs: with(foreign, func(o *roleObs) { o.Super = true }), reset: true, wantErr: true, mention: "superuser"},
		{name: "member of another role: refused", obs: with(ours, func(o *roleObs) { o.MemberOf = []string{"pg_read_all_data"} }),
			wantErr: true, mention: "pg_read_all_data"},
		{name: "foreign role with the right password and privileges: accepted as is", obs: foreign},
		{name: "foreign role, other password: refused", obs: with(foreign, func(o *roleObs) { o.PasswordMatches = false }),
			wantErr: true, mention: "--reset-replication-password"},
		{name: "foreign role, other password, reset asked: set", obs: with(foreign, func(o *roleObs) { o.PasswordMatches = false }), reset: true,
			want: roleAction{SetPassword: true}},
		{name: "foreign role with CREATEDB: refused", obs: with(foreign, func(o *roleObs) { o.CreateDB = true }), wantErr: true, mention: "CREATEDB"},
		{name: "foreign role with CREATEDB: refused even with reset", obs: with(foreign, func(o *roleObs) { o.CreateDB = true }), reset: true,
			wantErr: true, mention: "CREATEDB"},
		{name: "foreign role without REPLICATION: refused", obs: with(foreign, func(o *roleObs) { o.Replication = false }), wantErr: true, mention: "REPLICATION"},
		{name: "foreign role with a comment of its own: refused on other password",
			obs: with(foreign, func(o *roleObs) { o.Comment, o.PasswordMatches = "replication for the reporting copy", false }), wantErr: true},
		{name: "another pair's role, same password: accepted", obs: otherPair},
		{name: "another pair's role, other password: refused naming the pair", obs: with(otherPair, func(o *roleObs) { o.PasswordMatches = false }),
			wantErr: true, mention: "pair2"},
		{name: "another pair's role, other password, reset asked: set", obs: with(otherPair, func(o *roleObs) { o.PasswordMatches = false }), reset: true,
			want: roleAction{SetPassword: true}},
		{name: "another pair's role gained CREATEDB: taken away", obs: with(otherPair, func(o *roleObs) { o.CreateDB = true }), want: roleAction{SetAttrs: true}},
		{name: "comment of a pair whose name extends this one is not ours",
			obs: with(ours, func(o *roleObs) { o.Comment, o.PasswordMatches = roleComment("pair1x"), false }), wantErr: true, mention: "pair1x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := decideRole("sdr_repl", "pair1", tt.obs, tt.reset)
			assertErr(t, err, tt.wantErr, true, tt.mention)
			if err == nil && got != tt.want {
				t.Errorf("decideRole = %+v, want %+v", got, tt.want)
			}
		})
	}
}
