package steps

import "testing"

func TestDecidePrimaryReady(t *testing.T) {
	ok := primaryReadiness{ReplSystemID: testSysID, Slot: slotObs{Exists: true, Type: "physical", WalStatus: "reserved"}, DataBytes: 1 << 30, WalBytes: 1 << 30}
	with := func(change func(r *primaryReadiness)) primaryReadiness {
		r := ok
		change(&r)
		return r
	}
	tests := []struct {
		name          string
		r             primaryReadiness
		wantErr       bool
		wantPermanent bool
		mention       string
	}{
		{name: "ready", r: ok},
		{name: "slot extended is fine", r: with(func(r *primaryReadiness) { r.Slot.WalStatus = "extended" })},
		{name: "slot unreserved still streams", r: with(func(r *primaryReadiness) { r.Slot.WalStatus = "unreserved" })},
		{name: "slot not created yet: wait", r: with(func(r *primaryReadiness) { r.Slot = slotObs{} }), wantErr: true, mention: "4_retain_wal"},
		{name: "slot lost", r: with(func(r *primaryReadiness) { r.Slot.WalStatus = "lost" }), wantErr: true, wantPermanent: true, mention: "lost"},
		{name: "logical slot of that name", r: with(func(r *primaryReadiness) { r.Slot.Type = "logical" }), wantErr: true, wantPermanent: true, mention: "logical"},
		{name: "temporary slot of that name", r: with(func(r *primaryReadiness) { r.Slot.Temporary = true }), wantErr: true, wantPermanent: true},
		{name: "superuser", r: with(func(r *primaryReadiness) { r.Super = true }), wantErr: true, wantPermanent: true, mention: "superuser"},
		{name: "another server behind the replication connection", r: with(func(r *primaryReadiness) { r.ReplSystemID = otherSysID }),
			wantErr: true, wantPermanent: true, mention: otherSysID},
		{name: "a tablespace it cannot measure is left out of the disk check, not refused",
			r: with(func(r *primaryReadiness) { r.Unmeasured = []string{"fast_ssd"} })},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := decidePrimaryReady("dc1-a", "sdr_pair1_dc2a", "sdr_repl", testSysID, tt.r)
			assertErr(t, err, tt.wantErr, tt.wantPermanent, tt.mention)
		})
	}
}

func TestCheckDiskRoom(t *testing.T) {
	const mib = int64(1) << 20
	disk := func(node, host, fs string, free int64) diskObs {
		return diskObs{Node: node, Host: host, Filesystem: fs, Mount: "/var/lib", Free: free}
	}
	tests := []struct {
		name    string
		disks   []diskObs
		perCopy int64
		wantErr bool
		mention string
	}{
		{name: "each node has room", disks: []diskObs{disk("dc2-a", "h1", "/dev/sda1", 100*mib), disk("dc2-b", "h2", "/dev/sda1", 100*mib)}, perCopy: 60 * mib},
		{name: "exactly enough", disks: []diskObs{disk("dc2-a", "h1", "/dev/sda1", 60*mib)}, perCopy: 60 * mib},
		{name: "one byte short", disks: []diskObs{disk("dc2-a", "h1", "/dev/sda1", 60*mib-1)}, perCopy: 60 * mib, wantErr: true, mention: "dc2-a"},
		{name: "second node short", disks: []diskObs{disk("dc2-a", "h1", "/dev/sda1", 100*mib), disk("dc2-b", "h2", "/dev/sda1", 10*mib)},
			perCopy: 60 * mib, wantErr: true, mention: "dc2-b"},
		{name: "two nodes on one filesystem need two copies",
			disks:   []diskObs{disk("dc2-a", "h1", "/dev/sda1", 100*mib), disk("dc2-b", "h1", "/dev/sda1", 100*mib)},
			perCopy: 60 * mib, wantErr: true, mention: "shared by dc2-a, dc2-b"},
		{name: "two nodes on one host, different filesystems",
			disks: []diskObs{disk("dc2-a", "h1", "/dev/sda1", 100*mib), disk("dc2-b", "h1", "/dev/sdb1", 100*mib)}, perCopy: 60 * mib},
		{name: "same device name on two hosts is two filesystems",
			disks: []diskObs{disk("dc2-a", "h1", "/dev/sda1", 100*mib), disk("dc2-b", "H2", "/dev/sda1", 100*mib)}, perCopy: 60 * mib},
		{name: "empty primary", disks: []diskObs{disk("dc2-a", "h1", "/dev/sda1", 0)}, perCopy: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assertErr(t, checkDiskRoom(tt.disks, tt.perCopy), tt.wantErr, true, tt.mention)
		})
	}
}

func TestParseDF(t *testing.T) {
	tests := []struct {
		name    string
		out     string
		want    diskObs
		wantErr bool
	}{
		{name: "debian", out: "Filesystem     1024-blocks     Used Available Capacity Mounted on\n/dev/vda         263174212 18589324  77330336      20% /\n",
			want: diskObs{Filesystem: "/dev/vda", Mount: "/", Free: 77330336 * 1024}},
		{name: "mount point with a space", out: "Filesystem 1024-blocks Used Available Capacity Mounted on\n/dev/sdb1 100 50 40 55% /srv/pg data\n",
			want: diskObs{Filesystem: "/dev/sdb1", Mount: "/srv/pg data", Free: 40 * 1024}},
		{name: "no data line", out: "Filesystem 1024-blocks Used Available Capacity Mounted on\n", wantErr: true},
		{name: "garbage", out: "df: /nope: No such file or directory\n", wantErr: true},
		{name: "not a number", out: "Filesystem 1024-blocks Used Available Capacity Mounted on\n/dev/sdb1 100 50 many 55% /srv\n", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseDF(tt.out)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if err == nil && got != tt.want {
				t.Errorf("parseDF = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestDecideSlot(t *testing.T) {
	tests := []struct {
		name   string
		obs    slotObs
		active bool
		want   slotAction
	}{
		{"missing", slotObs{}, false, slotCreate},
		{"reserved", slotObs{Exists: true, Type: "physical", WalStatus: "reserved"}, false, slotKeep},
		{"reserved and streaming", slotObs{Exists: true, Type: "physical", WalStatus: "reserved"}, true, slotKeep},
		{"unreserved", slotObs{Exists: true, Type: "physical", WalStatus: "unreserved"}, true, slotKeep},
		{"never used (wal_status NULL)", slotObs{Exists: true, Type: "physical"}, false, slotKeep},
		{"lost and free", slotObs{Exists: true, Type: "physical", WalStatus: "lost"}, false, slotRecreate},
		{"lost but held", slotObs{Exists: true, Type: "physical", WalStatus: "lost"}, true, slotRefuseLostActive},
		{"lost, invalidated for removed WAL (17)", slotObs{Exists: true, Type: "physical", WalStatus: "lost", InvalidationReason: "wal_removed"}, false, slotRecreate},
		{"logical", slotObs{Exists: true, Type: "logical", WalStatus: "reserved"}, false, slotRefuseKind},
		{"temporary", slotObs{Exists: true, Type: "physical", Temporary: true}, false, slotRefuseKind},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := tt.obs
			o.Active = tt.active
			if got := decideSlot(o); got != tt.want {
				t.Errorf("decideSlot = %v, want %v", got, tt.want)
			}
		})
	}
}
