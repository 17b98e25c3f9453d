package bootstraptest

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/custos-ha/custos/plugin/sdk/replica/replicatest"
)

// productionTimeout bounds how long a new cluster takes to come up as a
// primary: the recovery of a small test cluster, archive fetches
// included.
const productionTimeout = 2 * time.Minute

// Cluster is a new cluster started by StartCluster.
type Cluster struct {
	// Port is where it listens, on 127.0.0.1 only; pg_hba.conf trusts
	// every connection from there.
	Port int
	// Postmaster is the server process; it is stopped when the test ends.
	Postmaster *replicatest.Postmaster
}

// StartCluster starts a new cluster's data directory the way the host
// starts it the first time, and waits until it is a primary that accepts
// connections. Like the host, it brings its own configuration files (the
// data directory's postgresql.conf, pg_hba.conf and pg_ident.conf are not
// read; postgresql.auto.conf is) and, when params is not empty
// (bootstrap.RecoveryParameters), starts in archive recovery:
// recovery.signal and the parameters, so that PostgreSQL recovers to the
// target and promotes. Hot standby is off, so the server accepts
// connections only once it is a primary, and archiving is off, so that a
// restored cluster does not archive into the backup's repository. It must
// not run as root (see replicatest.RunAsPostgres).
func StartCluster(t *testing.T, binDir, dataDir string, params map[string]string) *Cluster {
	t.Helper()
	replicatest.RequireBinaries(t, binDir, "postgres", "pg_isready", "pg_controldata")
	confDir := t.TempDir()
	conf := filepath.Join(confDir, "postgresql.conf")
	hba := filepath.Join(confDir, "pg_hba.conf")
	ident := filepath.Join(confDir, "pg_ident.conf")
	writeFile(t, conf, "# Every setting is given on the command line.\n")
	writeFile(t, hba, "host all all 127.0.0.1/32 trust\n")
	writeFile(t, ident, "")
	if len(params) > 0 {
		writeFile(t, filepath.Join(dataDir, "recovery.signal"), "")
	}
	port := replicatest.FreePort(t)
	args := []string{
		"-c", "config_file=" + conf,
		"-c", "hba_file=" + hba,
		"-c", "ident_file=" + ident,
		"-c", "port=" + strconv.Itoa(port),
		"-c", "listen_addresses=127.0.0.1",
		"-c", "unix_socket_directories=",
		"-c", "hot_standby=off",
		"-c", "archive_mode=off",
		"-c", "fsync=off",
		"-c", "lc_messages=C",
		"-c", "logging_collector=off",
	}
	names := make([]string, 0, len(params))
	for k := range params {
		names = append(names, k)
	}
	slices.Sort(names)
	for _, k := range names {
		// A command-line value is taken as it is: no quoting needed.
		args = append(args, "-c", k+"="+params[k])
	}
	pm := replicatest.StartPostmaster(t, binDir, dataDir, args...)

	start := time.Now()
	deadline := start.Add(productionTimeout)
	for !accepting(binDir, port) {
		select {
		case <-pm.Exited():
			t.Fatalf("postgres exited before it came up as a primary (recovery settings %v):\n%s", params, pm.Log())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("postgres did not come up as a primary within %s (recovery settings %v):\n%s", productionTimeout, params, pm.Log())
		}
		time.Sleep(pollInterval)
	}
	cmd := exec.Command(filepath.Join(binDir, "pg_controldata"), "-D", dataDir)
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("pg_controldata: %v\n%s", err, out)
	}
	if !bytes.Contains(out, []byte("in production")) {
		t.Fatalf("the started cluster is not in production:\n%s\nserver log:\n%s", out, pm.Log())
	}
	t.Logf("the new cluster in %s came up as a primary after %s (recovery settings %v)", dataDir, time.Since(start).Round(time.Millisecond), params)
	return &Cluster{Port: port, Postmaster: pm}
}

// accepting reports whether the server accepts connections; with hot
// standby off, only a primary does.
func accepting(binDir string, port int) bool {
	cmd := exec.Command(filepath.Join(binDir, "pg_isready"), "-q", "-h", "127.0.0.1", "-p", strconv.Itoa(port))
	return cmd.Run() == nil
}
