package kube

import (
	"reflect"
	"testing"

	"github.com/custos-ha/custos/plugin/sdk/dcs"
	"github.com/custos-ha/custos/plugin/sdk/dcs/dcstest"
)

func TestCapabilities(t *testing.T) {
	if capMaxValueBytes != dcstest.CapMaxValueBytes {
		t.Fatalf("capMaxValueBytes %q, the kit reads %q", capMaxValueBytes, dcstest.CapMaxValueBytes)
	}
	caps := Capabilities()
	if caps[dcs.CapClientSideTTL] != "true" || caps[dcstest.CapMaxValueBytes] != "245760" {
		t.Fatalf("capabilities %v", caps)
	}
}

func TestLayoutNames(t *testing.T) {
	cm := layout{scope: "pg"}
	ep := layout{scope: "pg", endpoints: true}
	for _, tc := range []struct{ got, want string }{
		{cm.leaderName(), "pg-leader"},
		{ep.leaderName(), "pg"},
		{cm.configName(), "pg-config"},
		{cm.failoverName(), "pg-failover"},
		{cm.syncName(), "pg-sync"},
		{cm.memberObjectName("pg-0"), "pg-member-pg-0"},
		{cm.objectOf(dcs.KeyHistory), "pg-config"},
		{cm.objectOf(dcs.KeyInitialize), "pg-config"},
		{ep.objectOf(dcs.KeyStatus), "pg"},
		{cm.objectOf(dcs.KeyFailsafe), "pg-leader"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
	if m, ok := cm.memberOf("pg-member-pg-0"); !ok || m != "pg-0" {
		t.Errorf("memberOf: %q %v", m, ok)
	}
	for _, n := range []string{"pg-leader", "pg-member-", "other-member-a"} {
		if _, ok := cm.memberOf(n); ok {
			t.Errorf("%s read as a member object", n)
		}
	}
}

// apply applies an encoded change to annotations as the API server applies
// a merge patch.
func apply(ann map[string]string, ch map[string]*string) map[string]string {
	out := map[string]string{}
	for k, v := range ann {
		out[k] = v
	}
	for k, v := range ch {
		if v == nil {
			delete(out, k)
		} else {
			out[k] = *v
		}
	}
	return out
}

func TestFieldCodecsPatroniForm(t *testing.T) {
	for _, tc := range []struct {
		name string
		key  dcs.Key
		in   string
		ann  map[string]string
		out  string
	}{
		{"status", dcs.KeyStatus, `{"optime":25166136,"slots":{"b":25166136},"retain_slots":["a","b"]}`,
			map[string]string{"optime": "25166136", "slots": `{"b":25166136}`, "retain_slots": `["a","b"]`},
			`{"optime":25166136,"slots":{"b":25166136},"retain_slots":["a","b"]}`},
		{"status spaced and reordered", dcs.KeyStatus, `{ "slots": {"b": 1}, "optime": 2 }`,
			map[string]string{"optime": "2", "slots": `{"b":1}`}, `{"optime":2,"slots":{"b":1}}`},
		{"failover", dcs.KeyFailover, `{"leader":"a","member":"b","scheduled_at":"2030-01-01T00:00:00+00:00"}`,
			map[string]string{"leader": "a", "member": "b", "scheduled_at": "2030-01-01T00:00:00+00:00"},
			`{"leader":"a","member":"b","scheduled_at":"2030-01-01T00:00:00+00:00"}`},
		{"failover cleaned", dcs.KeyFailover, `{}`, map[string]string{}, `{}`},
		{"sync as core writes it", dcs.KeySync, `{"leader":"a","quorum":0,"sync_standby":"b,c"}`,
			map[string]string{"leader": "a", "quorum": "0", "sync_standby": "b,c"}, `{"leader":"a","quorum":0,"sync_standby":"b,c"}`},
		{"sync without standby", dcs.KeySync, `{"leader":"a","quorum":0,"sync_standby":null}`,
			map[string]string{"leader": "a", "quorum": "0"}, `{"leader":"a","quorum":0}`},
		{"html characters", dcs.KeyFailover, `{"leader":"<a&b>"}`, map[string]string{"leader": "<a&b>"}, `{"leader":"<a&b>"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cod := codecOf(tc.key)
			ann := apply(map[string]string{"unrelated": "x", rawAnnotationPrefix + string(tc.key): "stale"}, cod.encode([]byte(tc.in)))
			delete(ann, "unrelated")
			if !reflect.DeepEqual(ann, tc.ann) {
				t.Fatalf("annotations %v, want %v", ann, tc.ann)
			}
			got, ok := cod.decode(ann, true)
			if !ok || string(got) != tc.out {
				t.Fatalf("decoded %q %v, want %q", got, ok, tc.out)
			}
		})
	}
}

// TestFieldCodecsVerbatim checks that values without Patroni's field-wise
// form round-trip byte for byte through the raw annotation.
func TestFieldCodecsVerbatim(t *testing.T) {
	for _, tc := range []struct {
		key dcs.Key
		in  string
	}{
		{dcs.KeyFailover, "one"},
		{dcs.KeyFailover, "a:b"},
		{dcs.KeySync, `{"leader":"a","unknown":1}`},
		{dcs.KeySync, `{"leader":1}`},
		{dcs.KeySync, `{"quorum":1.5}`},
		{dcs.KeyStatus, `{}`},
		{dcs.KeyStatus, `12345`},
		{dcs.KeyStatus, `{"optime":null}`},
		{dcs.KeyStatus, ""},
	} {
		cod := codecOf(tc.key)
		ann := apply(map[string]string{"optime": "1", "leader": "x"}, cod.encode([]byte(tc.in)))
		raw := rawAnnotationPrefix + string(tc.key)
		if ann[raw] != tc.in {
			t.Errorf("%s %q: raw annotation %q", tc.key, tc.in, ann[raw])
		}
		got, ok := cod.decode(ann, true)
		if !ok || string(got) != tc.in {
			t.Errorf("%s %q: decoded %q %v", tc.key, tc.in, got, ok)
		}
		// Switching back to a field-wise value drops the raw annotation.
		back := apply(ann, cod.encode([]byte(`{"leader":"a"}`)))
		if tc.key == dcs.KeyStatus {
			back = apply(ann, cod.encode([]byte(`{"optime":7}`)))
		}
		if _, ok := back[raw]; ok {
			t.Errorf("%s: raw annotation left after a field-wise write", tc.key)
		}
	}
}

func TestFieldCodecPresence(t *testing.T) {
	if _, ok := statusCodec.decode(map[string]string{"leader": "a"}, true); ok {
		t.Error("status present on a leader object without status annotations")
	}
	if _, ok := syncCodec.decode(nil, false); ok {
		t.Error("sync present without its object")
	}
	if got, ok := syncCodec.decode(map[string]string{}, true); !ok || string(got) != "{}" {
		t.Errorf("an empty sync object reads %q %v, want {} (Patroni's emptied sync)", got, ok)
	}
	// Fields written by someone else that do not parse are skipped, as
	// Patroni skips them.
	if got, ok := statusCodec.decode(map[string]string{"optime": "x", "slots": `{"a":1}`}, true); !ok || string(got) != `{"slots":{"a":1}}` {
		t.Errorf("decoded %q", got)
	}
}

func TestRawCodec(t *testing.T) {
	cod := codecOf(dcs.KeyConfig)
	ann := apply(nil, cod.encode([]byte(`{"ttl": 30}`)))
	if !reflect.DeepEqual(ann, map[string]string{"config": `{"ttl": 30}`}) {
		t.Fatalf("annotations %v", ann)
	}
	if got, ok := cod.decode(ann, true); !ok || string(got) != `{"ttl": 30}` {
		t.Fatalf("decoded %q", got)
	}
	if _, ok := cod.decode(map[string]string{"initialize": ""}, true); ok {
		t.Fatal("config present without its annotation")
	}
	if got, ok := codecOf(dcs.KeyInitialize).decode(map[string]string{"initialize": ""}, true); !ok || len(got) != 0 {
		t.Fatal("an empty initialize annotation is a present, empty value")
	}
	if rm := apply(ann, removal(cod)); len(rm) != 0 {
		t.Fatalf("removal left %v", rm)
	}
	if rm := removal(statusCodec); len(rm) != 4 {
		t.Fatalf("status removal %v", rm)
	}
}

func TestContentVersion(t *testing.T) {
	a, b := contentVersion([]byte("one")), contentVersion([]byte("two"))
	if a == b || a != contentVersion([]byte("one")) || len(a) != 17 {
		t.Fatalf("versions %q %q", a, b)
	}
}

func TestLeaderRecord(t *testing.T) {
	ann := map[string]string{"leader": "a", "renewTime": "t1", "ttl": "30", "optime": "5"}
	r1 := leaderRecord(ann)
	ann["optime"] = "6"
	if leaderRecord(ann) != r1 {
		t.Fatal("optime is not part of the leader record")
	}
	ann["renewTime"] = "t2"
	if leaderRecord(ann) == r1 {
		t.Fatal("renewTime is part of the leader record")
	}
	if leaderRecord(map[string]string{"optime": "1"}) != "" {
		t.Fatal("no record without its annotations")
	}
}
