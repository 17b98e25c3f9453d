package embedetcd

import (
	"testing"

	"go.uber.org/goleak"
)

// Stop must end every goroutine etcd started: custos-demo runs etcd in
// its own process and expects it gone after Stop.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
