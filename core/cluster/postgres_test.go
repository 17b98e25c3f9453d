package cluster

import (
	"encoding/json"
	"testing"
)

func TestPendingRestartReasonInMemberKey(t *testing.T) {
	if got := PendingRestartReason(nil); got != nil {
		t.Errorf("no changes: %v, want nil (the key leaves it out)", got)
	}
	m := Member{Name: "pg1", PendingRestart: true,
		PendingRestartReason: PendingRestartReason(map[string]ParamChange{"max_connections": {OldValue: "100", NewValue: "200"}})}
	data, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	back, err := ParseMember("pg1", data)
	if err != nil {
		t.Fatal(err)
	}
	reason, _ := back.PendingRestartReason["max_connections"].(map[string]any)
	if reason["old_value"] != "100" || reason["new_value"] != "200" {
		t.Errorf("pending_restart_reason read back as %v from %s", back.PendingRestartReason, data)
	}
}
