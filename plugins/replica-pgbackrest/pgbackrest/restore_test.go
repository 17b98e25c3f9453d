package pgbackrest

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestRestoreArgs(t *testing.T) {
	base := Config{Stanza: "main", Command: DefaultCommand}
	full := Config{
		Stanza: "main", Command: DefaultCommand, ConfigFile: "/etc/pgbackrest/custos.conf",
		Repo: 2, RepoPath: "/backup/repo2", ProcessMax: 4,
		Options: Options{{Name: "link-all"}, {Name: "recovery-option", Value: "a=b", HasValue: true}},
	}
	console := []string{"--log-level-console=detail", "--log-level-stderr=off"}
	args := func(parts ...[]string) []string {
		var out []string
		for _, p := range parts {
			out = append(out, p...)
		}
		return append(out, "restore")
	}
	for _, tc := range []struct {
		name    string
		restore Restore
		want    []string
	}{
		{"standby replica", Restore{Config: base, DataDir: "/pg/data", Standby: true},
			args([]string{"--stanza=main", "--pg1-path=/pg/data", "--type=standby"}, console)},
		{"standby over an old copy", Restore{Config: base, DataDir: "/pg/data", Standby: true, Delta: true},
			args([]string{"--stanza=main", "--pg1-path=/pg/data", "--type=standby", "--delta"}, console)},
		{"every section key", Restore{Config: full, DataDir: "/pg/data", Standby: true},
			args([]string{"--stanza=main", "--pg1-path=/pg/data", "--config=/etc/pgbackrest/custos.conf", "--repo=2",
				"--repo2-path=/backup/repo2", "--process-max=4", "--type=standby"}, console,
				[]string{"--link-all", "--recovery-option=a=b"})},
		{"repo_path without repo is repository 1", Restore{Config: Config{Stanza: "main", RepoPath: "/r"}, DataDir: "/d", Standby: true},
			args([]string{"--stanza=main", "--pg1-path=/d", "--repo1-path=/r", "--type=standby"}, console)},
		{"standby following a timeline", Restore{Config: base, DataDir: "/d", Standby: true, Target: Target{Timeline: "current"}},
			args([]string{"--stanza=main", "--pg1-path=/d", "--type=standby", "--target-timeline=current"}, console)},
		{"new cluster, all the archive", Restore{Config: base, DataDir: "/d"},
			args([]string{"--stanza=main", "--pg1-path=/d"}, console)},
		{"immediate", Restore{Config: base, DataDir: "/d", Target: Target{Type: TargetImmediate, Action: ActionPromote}},
			args([]string{"--stanza=main", "--pg1-path=/d", "--type=immediate", "--target-action=promote"}, console)},
		{"time", Restore{Config: base, DataDir: "/d", Target: Target{Type: TargetTime, Value: "2026-12-08 10:00:00+00", Action: ActionPromote}},
			args([]string{"--stanza=main", "--pg1-path=/d", "--type=time", "--target=2026-12-08 10:00:00+00", "--target-action=promote"}, console)},
		{"time with fraction, exclusive", Restore{Config: base, DataDir: "/d", Target: Target{Type: TargetTime, Value: "2026-12-08 10:00:00.123456", Exclusive: true}},
			args([]string{"--stanza=main", "--pg1-path=/d", "--type=time", "--target=2026-12-08 10:00:00.123456", "--target-exclusive"}, console)},
		{"lsn", Restore{Config: base, DataDir: "/d", Target: Target{Type: TargetLSN, Value: "0/3000060", Action: ActionShutdown}},
			args([]string{"--stanza=main", "--pg1-path=/d", "--type=lsn", "--target=0/3000060", "--target-action=shutdown"}, console)},
		{"xid on a timeline", Restore{Config: base, DataDir: "/d", Target: Target{Type: TargetXID, Value: "7421", Action: ActionPause, Timeline: "3"}},
			args([]string{"--stanza=main", "--pg1-path=/d", "--type=xid", "--target=7421", "--target-action=pause", "--target-timeline=3"}, console)},
		{"name with delta", Restore{Config: full, DataDir: "/d", Delta: true, Target: Target{Type: TargetName, Value: "before upgrade", Action: ActionPromote}},
			args([]string{"--stanza=main", "--pg1-path=/d", "--config=/etc/pgbackrest/custos.conf", "--repo=2", "--repo2-path=/backup/repo2",
				"--process-max=4", "--type=name", "--target=before upgrade", "--target-action=promote", "--delta"}, console,
				[]string{"--link-all", "--recovery-option=a=b"})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.restore.Args()
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("args =\n%q\nwant\n%q", got, tc.want)
			}
		})
	}
}

func TestRestoreArgsRefusals(t *testing.T) {
	base := Config{Stanza: "main"}
	for _, tc := range []struct {
		name    string
		restore Restore
		want    string
	}{
		{"no stanza", Restore{DataDir: "/d"}, "no stanza"},
		{"relative data dir", Restore{Config: base, DataDir: "data"}, "not an absolute path"},
		{"standby with a target", Restore{Config: base, DataDir: "/d", Standby: true, Target: Target{Type: TargetTime, Value: "2026-12-08 10:00:00"}}, "takes no recovery target"},
		{"standby with an action", Restore{Config: base, DataDir: "/d", Standby: true, Target: Target{Action: ActionPromote}}, "needs a target type"},
		{"unknown type", Restore{Config: base, DataDir: "/d", Target: Target{Type: "standby"}}, "not one of immediate"},
		{"bad time", Restore{Config: base, DataDir: "/d", Target: Target{Type: TargetTime, Value: "yesterday"}}, "not YYYY-MM-DD"},
		{"bad lsn", Restore{Config: base, DataDir: "/d", Target: Target{Type: TargetLSN, Value: "3000060"}}, "not a WAL location"},
		{"bad xid", Restore{Config: base, DataDir: "/d", Target: Target{Type: TargetXID, Value: "-1"}}, "not a transaction id"},
		{"empty name", Restore{Config: base, DataDir: "/d", Target: Target{Type: TargetName, Value: " "}}, "needs the restore point"},
		{"exclusive name", Restore{Config: base, DataDir: "/d", Target: Target{Type: TargetName, Value: "x", Exclusive: true}}, "cannot be exclusive"},
		{"immediate with a value", Restore{Config: base, DataDir: "/d", Target: Target{Type: TargetImmediate, Value: "x"}}, "takes no value"},
		{"exclusive immediate", Restore{Config: base, DataDir: "/d", Target: Target{Type: TargetImmediate, Exclusive: true}}, "cannot be exclusive"},
		{"bad action", Restore{Config: base, DataDir: "/d", Target: Target{Type: TargetImmediate, Action: "stop"}}, "not one of pause"},
		{"bad timeline", Restore{Config: base, DataDir: "/d", Target: Target{Timeline: "newest"}}, "not current, latest"},
		{"timeline zero", Restore{Config: base, DataDir: "/d", Target: Target{Timeline: "0"}}, "not current, latest"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.restore.Args()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want it to mention %q", err, tc.want)
			}
		})
	}
}

// TestExplain: pgBackRest's output (as 2.45 prints it) becomes a sentence
// naming the stanza and the repository.
func TestExplain(t *testing.T) {
	missingStanza := []string{
		"WARN: repo1: [FileMissingError] unable to load info file '/r/backup/main/backup.info' or '/r/backup/main/backup.info.copy':",
		"FileMissingError: unable to open missing file '/r/backup/main/backup.info' for read",
		"HINT: has a stanza-create been performed?",
		"ERROR: [075]: no backup set found to restore",
	}
	for _, tc := range []struct {
		name     string
		cfg      Config
		problems []string
		want     []string
		is       error
	}{
		{"missing stanza", Config{Stanza: "main", RepoPath: t.TempDir()}, missingStanza,
			[]string{`stanza "main" does not exist in repository repo1 at /`, "stanza-create"}, ErrStanzaNotFound},
		{"missing repository path", Config{Stanza: "main", RepoPath: "/nonexistent/custos-repo"}, missingStanza,
			[]string{"cannot reach repository repo1 at /nonexistent/custos-repo", `stanza "main"`}, ErrRepoUnreachable},
		{"no backup", Config{Stanza: "main", ConfigFile: "/etc/pb.conf"}, []string{"ERROR: [075]: no backup set found to restore"},
			[]string{`no backup of stanza "main" to restore in the repositories as configured in /etc/pb.conf`}, ErrNoBackup},
		{"unreachable host", Config{Stanza: "main", Options: Options{{Name: "repo1-host", Value: "backup1", HasValue: true}}},
			[]string{"ERROR: [125]: remote-0 process on 'backup1' terminated unexpectedly [255]: ssh: connect to host backup1 port 22: Connection refused"},
			[]string{"cannot reach repository repo1 on host backup1", "Connection refused"}, ErrRepoUnreachable},
		{"unreachable s3", Config{Stanza: "main", Repo: 2, Options: Options{{Name: "repo2-s3-bucket", Value: "b", HasValue: true}}},
			[]string{"WARN: repo2: [HostConnectError] unable to connect to '127.0.0.1:1': [111] Connection refused", "ERROR: [075]: no backup set found to restore"},
			[]string{"cannot reach repository repo2 in S3 bucket b", `stanza "main"`}, ErrRepoUnreachable},
		{"anything else", Config{Stanza: "main"}, []string{"ERROR: [031]: invalid option '--bogus'"},
			[]string{`pgbackrest restore of stanza "main" from the repositories as configured in /etc/pgbackrest/pgbackrest.conf failed (exit status`, "invalid option"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Restore{Config: tc.cfg, DataDir: "/d"}.explain(exitError(t, 75), tc.problems)
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("err = %q\nwant it to mention %q", err, w)
				}
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("err = %v, want it to wrap %v", err, tc.is)
			}
		})
	}
}
