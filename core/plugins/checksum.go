package plugins

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"strings"
)

// ChecksumError reports a plugin binary whose sha256 is not the one the
// configuration expects ([plugins.<name>] sha256). The plugin is not run.
type ChecksumError struct {
	Plugin   string
	Path     string
	Expected string
	Actual   string
}

func (e *ChecksumError) Error() string {
	return fmt.Sprintf("plugin %s: refusing to run %s: its sha256 is %s, the configuration expects %s (update [plugins.%s] sha256 if the binary was replaced on purpose)",
		e.Plugin, e.Path, e.Actual, e.Expected, e.Plugin)
}

// parseChecksums decodes the configured sha256 sums, keyed by binary name.
// A sum is 64 hex digits; a "sha256:" prefix is accepted.
func parseChecksums(sums map[string]string) (map[string][]byte, error) {
	out := make(map[string][]byte, len(sums))
	for name, s := range sums {
		s = strings.TrimPrefix(strings.TrimSpace(s), "sha256:")
		sum, err := hex.DecodeString(s)
		if err != nil || len(sum) != sha256.Size {
			return nil, fmt.Errorf("plugins.%s.sha256: %q is not a sha256 sum (64 hex digits)", name, s)
		}
		out[name] = sum
	}
	return out, nil
}

// fileSHA256 hashes a file.
func fileSHA256(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("hashing plugin binary: %w", err)
	}
	defer func() { _ = f.Close() }()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return nil, fmt.Errorf("hashing plugin binary %s: %w", path, err)
	}
	return h.Sum(nil), nil
}
