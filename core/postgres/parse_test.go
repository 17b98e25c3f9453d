package postgres

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestParseLSN(t *testing.T) {
	for in, want := range map[string]LSN{
		"0/0":               0,
		"0/3000148":         0x3000148,
		"16/B374D848":       0x16B374D848,
		"FFFFFFFF/FFFFFFFF": 0xFFFFFFFFFFFFFFFF,
		" 1/0 ":             1 << 32,
		"a/b":               0xa0000000b,
	} {
		got, err := ParseLSN(in)
		if err != nil || got != want {
			t.Errorf("ParseLSN(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "0", "/", "0/", "/0", "x/0", "0/x", "1/100000000", "-1/0", "+1/0", "0x1/0", "1/2/3"} {
		if got, err := ParseLSN(bad); err == nil {
			t.Errorf("ParseLSN(%q) = %v, want an error", bad, got)
		}
	}
	if s := LSN(0x16B374D848).String(); s != "16/B374D848" {
		t.Errorf("String = %q", s)
	}
	if LSN(0x3000148).Int64() != 50331976 {
		t.Errorf("Int64 = %d", LSN(0x3000148).Int64())
	}
}

func FuzzParseLSN(f *testing.F) {
	for _, s := range []string{"0/0", "16/B374D848", "FFFFFFFF/FFFFFFFF", "1/", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		l, err := ParseLSN(s)
		if err != nil {
			return
		}
		back, err := ParseLSN(l.String())
		if err != nil || back != l {
			t.Fatalf("%q -> %v -> %q -> %v, %v", s, uint64(l), l.String(), back, err)
		}
	})
}

func TestParseControlData(t *testing.T) {
	out, err := os.ReadFile(filepath.Join("testdata", "controldata_pg15_shutdown.txt"))
	if err != nil {
		t.Fatal(err)
	}
	cd, err := ParseControlData(out)
	if err != nil {
		t.Fatal(err)
	}
	if cd.SystemIdentifier != 7642011472967116994 || cd.ClusterState != StateShutDown || !cd.CleanShutdown() {
		t.Errorf("identity: %d %q", cd.SystemIdentifier, cd.ClusterState)
	}
	if cd.CheckpointLSN != 0x1500718 || cd.RedoLSN != 0x1500718 || cd.Timeline != 1 || cd.PrevTimeline != 1 {
		t.Errorf("checkpoint: %v %v %d %d", cd.CheckpointLSN, cd.RedoLSN, cd.Timeline, cd.PrevTimeline)
	}
	if cd.MinRecoveryLSN != 0 || cd.MinRecoveryTimeline != 0 || cd.WALLogHints || cd.DataChecksumVersion != 0 {
		t.Errorf("recovery/hints: %+v", cd)
	}
	if cd.WALLevel != "replica" || cd.MaxConnections != 100 || cd.MaxWALSenders != 10 || cd.WALSegmentSize != 16<<20 || !cd.FullPageWrites {
		t.Errorf("settings: %+v", cd)
	}
	if cd.ControlVersion != 1300 || cd.CatalogVersion != 202209061 {
		t.Errorf("versions: %d %d", cd.ControlVersion, cd.CatalogVersion)
	}
	// Keys glued to their value and values holding colons survive.
	if cd.Raw["Latest checkpoint's oldestCommitTsXid"] != "0" || !strings.Contains(cd.Raw["Time of latest checkpoint"], ":") {
		t.Errorf("raw: %q %q", cd.Raw["Latest checkpoint's oldestCommitTsXid"], cd.Raw["Time of latest checkpoint"])
	}
	if len(cd.Raw) < 50 {
		t.Errorf("raw holds %d keys", len(cd.Raw))
	}

	standby := strings.NewReplacer(
		"Database cluster state:               shut down", "Database cluster state:               shut down in recovery",
		"Minimum recovery ending location:     0/0", "Minimum recovery ending location:     0/5000060",
		"Min recovery ending loc's timeline:   0", "Min recovery ending loc's timeline:   2",
		"wal_log_hints setting:                off", "wal_log_hints setting:                on",
	).Replace(string(out))
	cd, err = ParseControlData([]byte(standby))
	if err != nil {
		t.Fatal(err)
	}
	if cd.ClusterState != StateShutDownInRecovery || cd.MinRecoveryLSN != 0x5000060 || cd.MinRecoveryTimeline != 2 || !cd.WALLogHints || !cd.CleanShutdown() {
		t.Errorf("standby: %+v", cd)
	}
}

func TestParseControlDataErrors(t *testing.T) {
	for name, in := range map[string]string{
		"empty":         "",
		"no sysid":      "Database cluster state: in production\n",
		"bad sysid":     "Database system identifier: abc\nDatabase cluster state: in production\n",
		"no state":      "Database system identifier: 1\n",
		"bad lsn":       "Database system identifier: 1\nDatabase cluster state: x\nLatest checkpoint location: 0-1\n",
		"bad timeline":  "Database system identifier: 1\nDatabase cluster state: x\nLatest checkpoint's TimeLineID: one\n",
		"bad bool":      "Database system identifier: 1\nDatabase cluster state: x\nwal_log_hints setting: maybe\n",
		"bad checksums": "Database system identifier: 1\nDatabase cluster state: x\nData page checksum version: v1\n",
	} {
		if cd, err := ParseControlData([]byte(in)); err == nil {
			t.Errorf("%s: parsed %+v", name, cd)
		}
	}
}

func FuzzParseControlData(f *testing.F) {
	sample, err := os.ReadFile(filepath.Join("testdata", "controldata_pg15_shutdown.txt"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(sample)
	f.Add([]byte("Database system identifier: 1\nDatabase cluster state: in production\nLatest checkpoint location: 0/1\n"))
	f.Add([]byte(":\n::\nx: \n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cd, err := ParseControlData(data)
		if err != nil {
			return
		}
		// Whatever parsed must agree with the raw lines it came from.
		if cd.ClusterState == "" || cd.ClusterState != cd.Raw["Database cluster state"] {
			t.Fatalf("state %q vs raw %q", cd.ClusterState, cd.Raw["Database cluster state"])
		}
		if v, ok := cd.Raw["Latest checkpoint location"]; ok {
			if l, err := ParseLSN(v); err != nil || l != cd.CheckpointLSN {
				t.Fatalf("checkpoint %v vs raw %q", cd.CheckpointLSN, v)
			}
		}
	})
}

func TestParseHistory(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("testdata", "00000003.history"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseHistory(data)
	if err != nil {
		t.Fatal(err)
	}
	want := []HistoryEntry{
		{Timeline: 1, SwitchPoint: 0x3000148, Reason: "no recovery target specified"},
		{Timeline: 2, SwitchPoint: 0x5000000, Reason: `at restore point "x"`},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ParseHistory = %+v, want %+v", got, want)
	}
	// Comments, spaces instead of tabs, no reason.
	got, err = ParseHistory([]byte("# comment\n1 0/10 reason with  spaces\n  \n2\t0/20\n"))
	if err != nil || len(got) != 2 || got[0].Reason != "reason with spaces" || got[1].SwitchPoint != 0x20 || got[1].Reason != "" {
		t.Errorf("ParseHistory loose = %+v, %v", got, err)
	}
	if got, err := ParseHistory(nil); err != nil || len(got) != 0 {
		t.Errorf("ParseHistory(empty) = %v, %v", got, err)
	}
	for _, bad := range []string{"1\n", "x\t0/1\tr\n", "0\t0/1\tr\n", "1\t0-1\tr\n", "2\t0/1\tr\n1\t0/2\tr\n"} {
		if got, err := ParseHistory([]byte(bad)); err == nil {
			t.Errorf("ParseHistory(%q) = %+v", bad, got)
		}
	}
	if HistoryFileName(10) != "0000000A.history" {
		t.Errorf("HistoryFileName(10) = %s", HistoryFileName(10))
	}
}

func FuzzParseHistory(f *testing.F) {
	f.Add([]byte("1\t0/3000148\tno recovery target specified\n"))
	f.Add([]byte("# c\n1 0/1\n2 0/2 x\n"))
	f.Add([]byte("\t\t\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		entries, err := ParseHistory(data)
		if err != nil {
			return
		}
		for i := 1; i < len(entries); i++ {
			if entries[i].Timeline <= entries[i-1].Timeline {
				t.Fatalf("timelines not increasing: %+v", entries)
			}
		}
		for _, e := range entries {
			if e.Timeline <= 0 {
				t.Fatalf("timeline %d", e.Timeline)
			}
		}
	})
}

func TestParseCheckpointEnd(t *testing.T) {
	lsn := LSN(0x3000028)
	out := "rmgr: XLOG        len (rec/tot):    114/   114, tx:          0, lsn: 0/03000028, prev 0/02000110, desc: CHECKPOINT_SHUTDOWN redo 0/3000028; tli 1\n"
	for _, tc := range []struct {
		stdout, stderr string
		want           LSN
	}{
		{out, "pg_waldump: error: error in WAL record at 0/3000028: invalid record length at 0/30000A0: wanted 24, got 0\n", 0x30000A0},
		{out, "pg_waldump: error: error in WAL record at 0/3000028: invalid record length at 0/30000A0: expected at least 24, got 0\n", 0x30000A0},
		{out + out, "", 0}, // another record follows
		{out, "pg_waldump: error: could not find file", 0}, // other failure
		{"", "pg_waldump: error: error in WAL record at 0/3000028: invalid record length at 0/30000A0: wanted 24, got 0", 0},
	} {
		if got := parseCheckpointEnd(tc.stdout, tc.stderr, lsn); got != tc.want {
			t.Errorf("parseCheckpointEnd(%q, %q) = %v, want %v", tc.stdout, tc.stderr, got, tc.want)
		}
	}
}
