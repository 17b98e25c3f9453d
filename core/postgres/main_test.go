package postgres

import (
	"fmt"
	"os"
	"testing"

	"go.uber.org/goleak"

	"github.com/custos-ha/custos/core/internal/testenv"
)

// TestMain runs the integration tests as the postgres OS user (PostgreSQL
// refuses root) and checks for leaked goroutines where the tests ran.
func TestMain(m *testing.M) {
	code, ranHere := testenv.Main(m, integration)
	if code == 0 && ranHere {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}
