package bootstrap

import (
	"errors"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/custos-ha/custos/plugin/sdk/replica"
)

func TestMethods(t *testing.T) {
	caps := map[string]string{CapMethods: " pgbackrest, clone ,,", CapTargets: "pgbackrest"}
	if got := Methods(caps); !slices.Equal(got, []string{"pgbackrest", "clone"}) {
		t.Errorf("Methods = %q", got)
	}
	if got := TargetMethods(caps); !slices.Equal(got, []string{"pgbackrest"}) {
		t.Errorf("TargetMethods = %q", got)
	}
	if got := Methods(nil); len(got) != 0 {
		t.Errorf("Methods(nil) = %q", got)
	}
}

// TestSharedSentinels: an error of replica.ClaimDataDir matches the
// bootstrap sentinels, so a plugin can claim with it.
func TestSharedSentinels(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "PG_VERSION"), []byte("15\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := replica.ClaimDataDir(dir); !errors.Is(err, ErrDataDirNotEmpty) {
		t.Errorf("claim of a non-empty directory = %v, want ErrDataDirNotEmpty", err)
	}
	if _, err := replica.ClaimDataDir(""); !errors.Is(err, ErrInvalidRequest) {
		t.Errorf("claim of no path = %v, want ErrInvalidRequest", err)
	}
}

func validRequest() Request {
	return Request{Method: "m", DataDir: "/var/lib/postgresql/data", BinDir: "/usr/lib/postgresql/15/bin"}
}

func TestRequestCheck(t *testing.T) {
	if err := validRequest().Check(); err != nil {
		t.Fatalf("valid request: %v", err)
	}
	for name, tc := range map[string]struct {
		mutate func(*Request)
		want   string
	}{
		"no method":         {func(r *Request) { r.Method = "" }, "no method"},
		"no data dir":       {func(r *Request) { r.DataDir = "" }, "no data directory"},
		"relative data dir": {func(r *Request) { r.DataDir = "data" }, `data directory "data" is not an absolute path`},
		"relative bin dir":  {func(r *Request) { r.BinDir = "bin" }, `bin directory "bin" is not an absolute path`},
		"env with =":        {func(r *Request) { r.Env = map[string]string{"A=B": "c"} }, `environment variable "A=B"`},
		"empty env name":    {func(r *Request) { r.Env = map[string]string{"": "c"} }, `environment variable ""`},
		"env value NUL":     {func(r *Request) { r.Env = map[string]string{"A": "x\x00"} }, `environment variable "A"`},
		"empty target":      {func(r *Request) { r.Target = &Target{} }, "none of immediate"},
	} {
		r := validRequest()
		tc.mutate(&r)
		err := r.Check()
		if !errors.Is(err, ErrInvalidRequest) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Check = %v, want ErrInvalidRequest saying %q", name, err, tc.want)
		}
	}
	// Every problem is named.
	err := Request{DataDir: "x"}.Check()
	if err == nil || !strings.Contains(err.Error(), "no method") || !strings.Contains(err.Error(), "not an absolute path") {
		t.Errorf("Check of two problems = %v", err)
	}
}

func TestTargetCheck(t *testing.T) {
	at := time.Date(2026, 12, 8, 1, 2, 3, 456789000, time.UTC)
	for _, tc := range []Target{
		{Immediate: true},
		{Time: at},
		{Time: at, Exclusive: true, Action: ActionPause, Timeline: "3"},
		{LSN: "0/3000060"},
		{LSN: "FFFFFFFF/ffffffff", Exclusive: true},
		{XID: 3},
		{XID: 1<<32 | 1234, Action: ActionShutdown},
		{Name: "before-upgrade", Timeline: TimelineCurrent},
		{Name: strings.Repeat("n", 63), Action: ActionPromote, Timeline: TimelineLatest},
	} {
		if err := tc.Check(); err != nil {
			t.Errorf("Check(%+v) = %v, want nil", tc, err)
		}
	}
	for _, tc := range []struct {
		target Target
		want   string
	}{
		{Target{}, "none of immediate"},
		{Target{Immediate: true, Name: "x"}, "more than one of immediate, time, lsn, xid, name is set (immediate, name)"},
		{Target{Time: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}, "outside years"},
		{Target{LSN: "3000060"}, "not a WAL location"},
		{Target{LSN: "0/123456789"}, "not a WAL location"},
		{Target{XID: 2}, "not a normal transaction ID"},
		{Target{XID: 1 << 32}, "not a normal transaction ID"},
		{Target{Name: strings.Repeat("n", 64)}, "at most 63"},
		{Target{Name: "a\nb"}, "control character"},
		{Target{Name: "x", Exclusive: true}, "exclusive applies to a time, lsn or xid target, not to name"},
		{Target{Immediate: true, Exclusive: true}, "not to immediate"},
		{Target{Immediate: true, Action: "resume"}, `action "resume"`},
		{Target{Immediate: true, Timeline: "0"}, `timeline "0"`},
		{Target{Immediate: true, Timeline: "newest"}, `timeline "newest"`},
	} {
		err := tc.target.Check()
		if !errors.Is(err, ErrInvalidRequest) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Check(%+v) = %v, want ErrInvalidRequest saying %q", tc.target, err, tc.want)
		}
	}
}

func TestTargetParameters(t *testing.T) {
	at := time.Date(2026, 12, 8, 1, 2, 3, 456789123, time.FixedZone("", 2*3600))
	for _, tc := range []struct {
		target Target
		want   map[string]string
	}{
		{Target{Immediate: true}, map[string]string{"recovery_target": "immediate", "recovery_target_action": "promote"}},
		{Target{Time: at, Exclusive: true}, map[string]string{
			"recovery_target_time": "2026-12-08 01:02:03.456789+02:00", "recovery_target_inclusive": "off", "recovery_target_action": "promote"}},
		{Target{Time: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}, map[string]string{
			"recovery_target_time": "2026-01-02 03:04:05+00:00", "recovery_target_action": "promote"}},
		{Target{LSN: "0/3000060", Action: ActionPause}, map[string]string{"recovery_target_lsn": "0/3000060", "recovery_target_action": "pause"}},
		{Target{XID: 1<<32 | 5, Timeline: "2"}, map[string]string{
			"recovery_target_xid": "4294967301", "recovery_target_action": "promote", "recovery_target_timeline": "2"}},
		{Target{Name: "rp", Action: ActionShutdown}, map[string]string{"recovery_target_name": "rp", "recovery_target_action": "shutdown"}},
	} {
		if got := tc.target.Parameters(); !maps.Equal(got, tc.want) {
			t.Errorf("Parameters(%+v) = %v, want %v", tc.target, got, tc.want)
		}
	}
}

func TestRecoveryParameters(t *testing.T) {
	if got := RecoveryParameters(nil, Result{}); len(got) != 0 {
		t.Errorf("no target, no restore_command: %v, want an ordinary start", got)
	}
	cmd := "pgbackrest --stanza=main archive-get %f \"%p\""
	if got := RecoveryParameters(nil, Result{RestoreCommand: cmd}); !maps.Equal(got, map[string]string{"restore_command": cmd}) {
		t.Errorf("restore_command only: %v", got)
	}
	got := RecoveryParameters(&Target{Name: "rp"}, Result{RestoreCommand: cmd})
	want := map[string]string{"restore_command": cmd, "recovery_target_name": "rp", "recovery_target_action": "promote"}
	if !maps.Equal(got, want) {
		t.Errorf("target and restore_command: %v, want %v", got, want)
	}
}

func TestResultCheck(t *testing.T) {
	for _, ok := range []string{"", "cp /archive/%f %p", `pgbackrest --stanza=main archive-get %f "%p"`, "fetch %p %f 100%%"} {
		if err := (Result{RestoreCommand: ok}).Check(); err != nil {
			t.Errorf("Check(%q) = %v, want nil", ok, err)
		}
	}
	for cmd, want := range map[string]string{
		"cp /archive/x %p":      "no %f",
		"cp /archive/%f /tmp":   "no %p",
		"cp /archive/%%f %%p":   "no %f",
		"cp %f %p\nrm -rf /":    "control character",
		"cp %f %p\x00":          "control character",
		"cp /archive/%f %p %":   "",
		"cp /archive/%f %x %p%": "",
	} {
		err := Result{RestoreCommand: cmd}.Check()
		if want == "" {
			if err != nil {
				t.Errorf("Check(%q) = %v, want nil", cmd, err)
			}
			continue
		}
		if !errors.Is(err, ErrInvalidResult) || !strings.Contains(err.Error(), want) {
			t.Errorf("Check(%q) = %v, want ErrInvalidResult saying %q", cmd, err, want)
		}
	}
}

func TestRecoveryConfig(t *testing.T) {
	dir := t.TempDir()
	// What pgbackrest restore leaves, with ALTER SYSTEM settings around.
	autoConf := "# Do not edit this file manually!\n" +
		"# It will be overwritten by the ALTER SYSTEM command.\n" +
		"work_mem = '8MB'\n" +
		"\n" +
		"# Recovery settings generated by pgBackRest restore on 2026-12-08 01:00:00\n" +
		"restore_command = 'pgbackrest --stanza=main archive-get %f \"%p\"'\n" +
		"  Recovery_Target_Time='2026-12-08 00:00:00+00'\n" +
		"recovery_target_action promote\n" +
		"# recovery_target_name = 'commented out'\n" +
		"primary_conninfo_extra = 'not a recovery setting'\n"
	write(t, filepath.Join(dir, "postgresql.auto.conf"), autoConf)
	write(t, filepath.Join(dir, "recovery.signal"), "")
	write(t, filepath.Join(dir, "PG_VERSION"), "15\n")

	got, err := RecoveryConfig(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"recovery.signal", "postgresql.auto.conf: restore_command",
		"postgresql.auto.conf: recovery_target_time", "postgresql.auto.conf: recovery_target_action"}
	if !slices.Equal(got, want) {
		t.Errorf("RecoveryConfig = %q, want %q", got, want)
	}
	if err := RemoveRecoveryConfig(dir); err != nil {
		t.Fatal(err)
	}
	if got, err := RecoveryConfig(dir); err != nil || len(got) != 0 {
		t.Errorf("after RemoveRecoveryConfig: %q, %v", got, err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "postgresql.auto.conf"))
	if err != nil {
		t.Fatal(err)
	}
	wantConf := "# Do not edit this file manually!\n" +
		"# It will be overwritten by the ALTER SYSTEM command.\n" +
		"work_mem = '8MB'\n" +
		"\n" +
		"# Recovery settings generated by pgBackRest restore on 2026-12-08 01:00:00\n" +
		"# recovery_target_name = 'commented out'\n" +
		"primary_conninfo_extra = 'not a recovery setting'\n"
	if string(b) != wantConf {
		t.Errorf("postgresql.auto.conf after removal:\n%s\nwant:\n%s", b, wantConf)
	}
	if _, err := os.Stat(filepath.Join(dir, "PG_VERSION")); err != nil {
		t.Errorf("PG_VERSION removed: %v", err)
	}
	// Nothing to remove, no postgresql.auto.conf: no error.
	empty := t.TempDir()
	if err := RemoveRecoveryConfig(empty); err != nil {
		t.Errorf("RemoveRecoveryConfig of a bare directory: %v", err)
	}
	if got, err := RecoveryConfig(empty); err != nil || len(got) != 0 {
		t.Errorf("RecoveryConfig of a bare directory: %q, %v", got, err)
	}
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}
