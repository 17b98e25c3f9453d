package config

import (
	"encoding/json"
	"testing"
)

// Keys of a slot custos does not know are written back as they were.
func TestDynamicSlotKeepsUnknownKeys(t *testing.T) {
	in := `{"slots":{"cdc":{"type":"logical","database":"app","plugin":"pgoutput","cluster_type":"primary"},"keep":{"type":"physical"}},"ignore_slots":[{"name":"ext"}]}`
	dyn, ps := ParseDynamic([]byte(in))
	if len(ps) > 0 {
		t.Fatal(ps)
	}
	out, err := json.Marshal(dyn)
	if err != nil {
		t.Fatal(err)
	}
	if !jsonEqual(t, out, []byte(in)) {
		t.Errorf("round trip:\n got %s\nwant %s", out, in)
	}
}
