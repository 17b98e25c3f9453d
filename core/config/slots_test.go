package config

import (
	"encoding/json"
	"strings"
	"testing"
)

// Slots are typed, and each wrong key is one problem at its path.
func TestDynamicSlotProblems(t *testing.T) {
	tests := []struct {
		in      string
		path    string
		message string
	}{
		{`{"slots": {"s": {"type": 5}}}`, "slots.s.type", "invalid value 5: want physical or logical"},
		{`{"slots": {"s": {}}}`, "slots.s.type", "missing required value"},
		{`{"slots": {"s": null}}`, "slots.s", "wrong type: expected a table, got null"},
		{`{"slots": {"s": {"type": "logical", "database": 7, "plugin": "p"}}}`, "slots.s.database", "wrong type: expected a string"},
		{`{"slots": []}`, "slots", "wrong type: expected a table"},
		{`{"ignore_slots": [{"name": 3}]}`, "ignore_slots[0].name", "wrong type: expected a string"},
		{`{"ignore_slots": ["x"]}`, "ignore_slots[0]", "wrong type: expected a table"},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			_, ps := ParseDynamic([]byte(tc.in))
			if len(ps) != 1 {
				t.Fatalf("want one problem, got %d:\n%v", len(ps), ps)
			}
			if ps[0].Path != tc.path || !strings.Contains(ps[0].Message, tc.message) {
				t.Errorf("problem = %q, want path %q with %q", ps[0], tc.path, tc.message)
			}
		})
	}
}

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
