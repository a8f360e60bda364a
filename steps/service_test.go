package steps

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/pgsdr/sdr/cluster"
	"github.com/pgsdr/sdr/workflow"
)

func TestServiceCommands(t *testing.T) {
	node := func(edit func(n *cluster.Node)) *cluster.Node {
		n := &cluster.Node{Name: "dc2-a", DataDir: "/var/lib/postgresql/15/main", BinDir: "/usr/lib/postgresql/15/bin",
			LogFile: "/var/lib/postgresql/15/main.sdr/postgresql.log", Service: cluster.Service{Manager: cluster.ManagerPgCtl}}
		edit(n)
		return n
	}
	cases := []struct {
		name string
		n    *cluster.Node
		want serviceCmds
	}{
		{"pg_ctl, configuration in the data directory", node(func(*cluster.Node) {}), serviceCmds{
			Start:    "mkdir -p /var/lib/postgresql/15/main.sdr && /usr/lib/postgresql/15/bin/pg_ctl start -D /var/lib/postgresql/15/main -l /var/lib/postgresql/15/main.sdr/postgresql.log -w -t 300",
			Stop:     "/usr/lib/postgresql/15/bin/pg_ctl stop -D /var/lib/postgresql/15/main -m fast -w -t 300",
			Status:   "/usr/lib/postgresql/15/bin/pg_ctl status -D /var/lib/postgresql/15/main",
			Describe: "pg_ctl"}},
		{"pg_ctl pointed at config_dir", node(func(n *cluster.Node) { n.ConfigDir = "/etc/pg conf" }), serviceCmds{
			Start:    "mkdir -p /var/lib/postgresql/15/main.sdr && /usr/lib/postgresql/15/bin/pg_ctl start -D '/etc/pg conf' -l /var/lib/postgresql/15/main.sdr/postgresql.log -w -t 300",
			Stop:     "/usr/lib/postgresql/15/bin/pg_ctl stop -D '/etc/pg conf' -m fast -w -t 300",
			Status:   "/usr/lib/postgresql/15/bin/pg_ctl status -D '/etc/pg conf'",
			Describe: "pg_ctl"}},
		{"pg_ctlcluster", node(func(n *cluster.Node) {
			n.Service = cluster.Service{Manager: cluster.ManagerPgCtlCluster, Version: "15", Cluster: "main"}
		}), serviceCmds{
			Start:    "pg_ctlcluster 15 main start",
			Stop:     "pg_ctlcluster --mode fast 15 main stop",
			Status:   "pg_ctlcluster 15 main status",
			Describe: "pg_ctlcluster 15 main"}},
		{"systemd, Debian unit through sudo", node(func(n *cluster.Node) {
			n.Service = cluster.Service{Manager: cluster.ManagerSystemd, Unit: "postgresql@15-main", Systemctl: cluster.DefaultSystemctl}
		}), serviceCmds{
			Start:    "sudo -n systemctl start postgresql@15-main",
			Stop:     "sudo -n systemctl stop postgresql@15-main",
			Status:   "systemctl is-active --quiet postgresql@15-main",
			Describe: "systemd unit postgresql@15-main"}},
		{"systemd, RHEL unit, systemctl allowed by polkit", node(func(n *cluster.Node) {
			n.Service = cluster.Service{Manager: cluster.ManagerSystemd, Unit: "postgresql-16", Systemctl: "systemctl"}
		}), serviceCmds{
			Start:    "systemctl start postgresql-16",
			Stop:     "systemctl stop postgresql-16",
			Status:   "systemctl is-active --quiet postgresql-16",
			Describe: "systemd unit postgresql-16"}},
		{"operator commands", node(func(n *cluster.Node) {
			n.Service = cluster.Service{Manager: cluster.ManagerCommands, Start: "sudo /usr/local/bin/pg start", Stop: "sudo /usr/local/bin/pg stop",
				Status: "/usr/local/bin/pg status"}
		}), serviceCmds{
			Start:    "sudo /usr/local/bin/pg start",
			Stop:     "sudo /usr/local/bin/pg stop",
			Status:   "/usr/local/bin/pg status",
			Describe: "the service commands of dc2-a"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := serviceCommands(tc.n, 5*time.Minute); got != tc.want {
				t.Errorf("serviceCommands =\n%+v\nwant\n%+v", got, tc.want)
			}
		})
	}
}

func TestStatusRunning(t *testing.T) {
	exit := func(code int) error { return &cluster.CommandError{Node: "dc2-a", Cmd: "status", ExitCode: code} }
	cases := []struct {
		name    string
		err     error
		running bool
		wantErr bool
	}{
		{"exit 0 runs", nil, true, false},
		{"pg_ctl status 3: not running", exit(3), false, false},
		{"pg_ctl status 4: no data directory", exit(4), false, false},
		{"systemctl is-active 3: inactive", exit(3), false, false},
		{"command not found", exit(127), false, true},
		{"not executable", exit(126), false, true},
		{"connection lost", fmt.Errorf("ssh: connection lost"), false, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := statusRunning(tc.err)
			if got != tc.running || (err != nil) != tc.wantErr {
				t.Errorf("statusRunning = %v, %v; want %v, error %v", got, err, tc.running, tc.wantErr)
			}
		})
	}
}

func TestCgroupService(t *testing.T) {
	cases := []struct {
		name, cgroup, want string
	}{
		{"cgroup v2, Debian unit", "0::/system.slice/system-postgresql.slice/postgresql@15-main.service\n", "postgresql@15-main.service"},
		{"cgroup v2, RHEL unit", "0::/system.slice/postgresql-16.service", "postgresql-16.service"},
		{"cgroup v1", "12:pids:/system.slice/postgresql-13.service\n1:name=systemd:/system.slice/postgresql-13.service\n", "postgresql-13.service"},
		{"started by hand in a login session", "0::/user.slice/user-109.slice/session-4.scope", ""},
		{"container root", "0::/", ""},
		{"a service's child scope is not the service", "0::/system.slice/ssh.service/session.scope", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := cgroupService(tc.cgroup); got != tc.want {
				t.Errorf("cgroupService = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestDecideService(t *testing.T) {
	base := serviceObs{Node: "dc2-a", Manager: cluster.ManagerPgCtl, Describe: "pg_ctl", SSHUser: "postgres", DataDir: "/var/lib/postgresql/15/main"}
	with := func(edit func(o *serviceObs)) serviceObs { o := base; edit(&o); return o }
	cases := []struct {
		name    string
		o       serviceObs
		refused string // "" accepted, else a word the refusal holds
	}{
		{"pg_ctl, stopped, no systemd", base, ""},
		{"pg_ctlcluster, a cluster disabled in start.conf that runs", with(func(o *serviceObs) {
			o.Manager, o.Version, o.Cluster, o.Describe = cluster.ManagerPgCtlCluster, "15", "main", "pg_ctlcluster 15 main"
			o.Running, o.PID, o.StartConf = true, 812, "disabled"
		}), "disabled in its start.conf"},
		{"pg_ctl, running", with(func(o *serviceObs) { o.Running, o.PID, o.ManagerRunning = true, 812, true }), ""},
		{"pg_ctl, a stale postmaster.pid whose pid lives (zombie, reused)", with(func(o *serviceObs) { o.ManagerRunning = true }), ""},
		{"pg_ctl, but systemd's unit runs it", with(func(o *serviceObs) {
			o.Systemd, o.Running, o.PID, o.ManagerRunning = true, true, 812, true
			o.CgroupUnit, o.CgroupUnitMainPID = "postgresql@15-main.service", 812
		}), "service.unit: postgresql@15-main"},
		{"started by hand from an ssh session without PAM: the service is sshd's, not PostgreSQL's", with(func(o *serviceObs) {
			o.Systemd, o.Running, o.PID, o.ManagerRunning = true, true, 812, true
			o.CgroupUnit, o.CgroupUnitMainPID = "ssh.service", 501
		}), ""},
		{"systemd, its own unit", with(func(o *serviceObs) {
			o.Manager, o.Unit, o.Describe = cluster.ManagerSystemd, "postgresql-16", "systemd unit postgresql-16"
			o.Systemd, o.Running, o.PID, o.ManagerRunning = true, true, 812, true
			o.CgroupUnit, o.CgroupUnitMainPID = "postgresql-16.service", 812
		}), ""},
		{"systemd, another unit runs it", with(func(o *serviceObs) {
			o.Manager, o.Unit, o.Describe = cluster.ManagerSystemd, "postgresql-16", "systemd unit postgresql-16"
			o.Systemd, o.Running, o.PID, o.ManagerRunning = true, true, 812, true
			o.CgroupUnit, o.CgroupUnitMainPID = "postgresql@16-main.service", 812
		}), "postgresql@16-main"},
		{"systemd unit inactive, server started by hand", with(func(o *serviceObs) {
			o.Manager, o.Unit, o.Describe = cluster.ManagerSystemd, "postgresql-16", "systemd unit postgresql-16"
			o.Systemd, o.Running, o.PID = true, true, 812
		}), "outside its service manager"},
		{"systemd unit active, no server in data_dir", with(func(o *serviceObs) {
			o.Manager, o.Unit, o.Describe = cluster.ManagerSystemd, "postgresql-16", "systemd unit postgresql-16"
			o.Systemd, o.ManagerRunning = true, true
		}), "another data directory"},
		{"pg_ctlcluster without systemd (container, test bed)", with(func(o *serviceObs) {
			o.Manager, o.Version, o.Cluster, o.StartConf = cluster.ManagerPgCtlCluster, "15", "main", "auto"
		}), ""},
		{"pg_ctlcluster as postgres where systemd starts the cluster", with(func(o *serviceObs) {
			o.Manager, o.Version, o.Cluster, o.StartConf, o.Systemd = cluster.ManagerPgCtlCluster, "15", "main", "auto", true
		}), "service.manager: systemd"},
		{"pg_ctlcluster on a systemd host, cluster started by hand (start.conf manual)", with(func(o *serviceObs) {
			o.Manager, o.Version, o.Cluster, o.StartConf, o.Systemd = cluster.ManagerPgCtlCluster, "15", "main", "manual", true
		}), ""},
		{"pg_ctlcluster as root redirects to systemctl itself", with(func(o *serviceObs) {
			o.Manager, o.Version, o.Cluster, o.StartConf, o.Systemd, o.SSHUser = cluster.ManagerPgCtlCluster, "15", "main", "auto", true, "root"
		}), ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := decideService(tc.o)
			switch {
			case tc.refused == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.refused != "" && err == nil:
				t.Fatalf("accepted, want a refusal mentioning %q", tc.refused)
			case err != nil && !strings.Contains(err.Error(), tc.refused):
				t.Errorf("refusal %q does not mention %q", err, tc.refused)
			case err != nil && !workflow.IsPermanent(err):
				t.Errorf("refusal not permanent: %v", err)
			}
		})
	}
}
