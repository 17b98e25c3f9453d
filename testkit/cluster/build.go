package cluster

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
)

// Custos, Custosctl and Plugin are the packages of the binaries a cluster
// runs, for Build.
const (
	Custos    = "github.com/custos-ha/custos/cmd/custos"
	Custosctl = "github.com/custos-ha/custos/cmd/custosctl"
)

// Plugin is the package of a shipped plugin ("dcs-etcd3").
func Plugin(name string) string { return "github.com/custos-ha/custos/plugins/" + name }

// PluginBinary is where Build puts a plugin: plugins/custos-plugin-<name>.
func PluginBinary(name string) string { return filepath.Join("plugins", "custos-plugin-"+name) }

// Build runs go build for each target (a path below dir -> a package),
// laid out as `make build` lays them out: dir/custos, dir/plugins/... dir
// and its plugins directory are readable and searchable by everyone and
// writable by their owner only: the agents may run as another user, and
// the plugin host refuses a plugin directory others may write to. It runs
// in the caller's module or workspace.
func Build(dir string, targets map[string]string) error {
	for _, d := range []string{dir, filepath.Join(dir, "plugins")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
		if err := os.Chmod(d, 0o755); err != nil {
			return err
		}
	}
	outs := make([]string, 0, len(targets))
	for out := range targets {
		outs = append(outs, out)
	}
	sort.Strings(outs)
	for _, out := range outs {
		cmd := exec.Command("go", "build", "-o", filepath.Join(dir, out), targets[out])
		if b, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("building %s: %w\n%s", targets[out], err, b)
		}
	}
	return nil
}
