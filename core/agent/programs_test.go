package agent

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/custos-ha/custos/core/postgres"
)

func TestCheckPrograms(t *testing.T) {
	dir := t.TempDir()
	fake := func(name string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	fake(postgres.BinPostgres)
	fake(postgres.BinPgCtl)
	err := checkPrograms(postgres.Config{BinDir: dir})
	if err == nil || !strings.Contains(err.Error(), "no initdb, pg_controldata in "+dir) {
		t.Fatalf("two programs missing: %v", err)
	}
	fake(postgres.BinInitdb)
	fake("my_controldata")
	if err := checkPrograms(postgres.Config{BinDir: dir, BinName: map[string]string{postgres.BinPgControlData: "my_controldata"}}); err != nil {
		t.Fatalf("every program there (one renamed by bin_name): %v", err)
	}
	if err := checkPrograms(postgres.Config{BinDir: filepath.Join(dir, "nowhere")}); err == nil {
		t.Fatal("a bin_dir that does not exist passed")
	}
}
