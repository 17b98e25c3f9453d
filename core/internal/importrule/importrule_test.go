//go:build integration

package importrule

import (
	"bytes"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

const (
	repoPath    = "github.com/custos-ha/custos"
	corePath    = repoPath + "/core"
	sdkPath     = repoPath + "/plugin/sdk"
	pluginsDir  = repoPath + "/plugins/"
	testkitPath = repoPath + "/testkit"
)

// sdkAllowed are the module path prefixes the SDK may import directly,
// besides the standard library and itself.
var sdkAllowed = []string{
	"github.com/hashicorp/go-plugin",
	"github.com/hashicorp/go-hclog",
	"google.golang.org/grpc",
	"google.golang.org/protobuf",
	"google.golang.org/genproto/googleapis/rpc", // gRPC status details
	"go.uber.org/goleak",                        // tests only
}

type pkg struct {
	ImportPath   string
	Standard     bool
	Imports      []string
	TestImports  []string
	XTestImports []string
	Deps         []string
}

// repoRoot finds the directory holding go.work.
func repoRoot(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "env", "GOWORK").Output()
	if err != nil || strings.TrimSpace(string(out)) == "" || strings.TrimSpace(string(out)) == "off" {
		t.Fatalf("this test needs the go.work workspace (go env GOWORK: %q, %v)", out, err)
	}
	return filepath.Dir(strings.TrimSpace(string(out)))
}

// list runs go list -deps -test over the patterns and returns every package
// with its imports.
func list(t *testing.T, patterns ...string) []pkg {
	t.Helper()
	args := append([]string{"list", "-e", "-json", "-tags", "integration", "-deps", "-test"}, patterns...)
	cmd := exec.Command("go", args...)
	cmd.Dir = repoRoot(t)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	var pkgs []pkg
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p pkg
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	return pkgs
}

// pluginPatterns are the package patterns of every plugin module.
func pluginPatterns(t *testing.T) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(repoRoot(t), "plugins"))
	if err != nil {
		t.Fatal(err)
	}
	var patterns []string
	for _, e := range entries {
		if e.IsDir() {
			patterns = append(patterns, "./plugins/"+e.Name()+"/...")
		}
	}
	return patterns
}

func TestSDKAndPluginsNeverImportCore(t *testing.T) {
	patterns := append([]string{"./plugin/sdk/..."}, pluginPatterns(t)...)
	for _, p := range list(t, patterns...) {
		for _, d := range append(append([]string{}, p.Deps...), p.Imports...) {
			if d == corePath || strings.HasPrefix(d, corePath+"/") {
				t.Errorf("%s depends on %s: plugin/sdk and plugins must not import core", p.ImportPath, d)
			}
		}
	}
}

func TestPluginsImportNoOtherPlugin(t *testing.T) {
	entries, err := os.ReadDir(filepath.Join(repoRoot(t), "plugins"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		own := pluginsDir + e.Name()
		for _, p := range list(t, "./plugins/"+e.Name()+"/...") {
			for _, d := range p.Deps {
				// Test variants read "path [path.test]".
				d, _, _ = strings.Cut(d, " ")
				if strings.HasPrefix(d, pluginsDir) && d != own && !strings.HasPrefix(d, own+"/") {
					t.Errorf("%s depends on %s: a plugin imports only plugin/sdk", p.ImportPath, d)
				}
			}
		}
	}
}

// TestTestkitOnlyInTests: the test servers and helpers of the testkit
// module reach the tests only. No package a binary or a plugin links
// (every non-test package of the commands, core, plugin/sdk and the
// plugins) depends on testkit, and testkit depends on no custos module, so
// a plugin's tests may use it without importing core.
func TestTestkitOnlyInTests(t *testing.T) {
	patterns := append([]string{"./cmd/...", "./core/...", "./plugin/sdk/...", "./testkit/..."}, pluginPatterns(t)...)
	for _, p := range list(t, patterns...) {
		inTestkit := p.ImportPath == testkitPath || strings.HasPrefix(p.ImportPath, testkitPath+"/")
		// A test variant reads "path [path.test]"; a test main ends in .test.
		if strings.Contains(p.ImportPath, " [") || strings.HasSuffix(p.ImportPath, ".test") {
			continue
		}
		for _, d := range p.Deps {
			switch {
			case inTestkit && strings.HasPrefix(d, repoPath+"/") && !strings.HasPrefix(d, testkitPath+"/"):
				t.Errorf("%s depends on %s: testkit depends on no other custos module", p.ImportPath, d)
			case !inTestkit && (d == testkitPath || strings.HasPrefix(d, testkitPath+"/")):
				t.Errorf("%s depends on %s: only tests may use testkit", p.ImportPath, d)
			}
		}
	}
}

func TestSDKImportsOnlyAllowedLibraries(t *testing.T) {
	for _, p := range list(t, "./plugin/sdk/...") {
		if !strings.HasPrefix(p.ImportPath, sdkPath) {
			continue
		}
		for _, imp := range append(append(append([]string{}, p.Imports...), p.TestImports...), p.XTestImports...) {
			if isStandard(imp) || strings.HasPrefix(imp, sdkPath) {
				continue
			}
			ok := false
			for _, a := range sdkAllowed {
				if imp == a || strings.HasPrefix(imp, a+"/") {
					ok = true
					break
				}
			}
			if !ok {
				t.Errorf("%s imports %s: the SDK may import only go-plugin, grpc, protobuf, hclog and the standard library", p.ImportPath, imp)
			}
		}
	}
}

// isStandard reports whether an import path belongs to the standard
// library: its first element has no dot.
func isStandard(path string) bool {
	first, _, _ := strings.Cut(path, "/")
	return !strings.Contains(first, ".")
}
