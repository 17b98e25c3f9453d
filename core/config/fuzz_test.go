package config

import (
	"encoding/json"
	"fmt"
	"os"
	"reflect"
	"testing"
)

func FuzzParse(f *testing.F) {
	f.Add([]byte(minimal))
	for _, file := range []string{"testdata/full.toml", "../../examples/custos.toml"} {
		if b, err := os.ReadFile(file); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte("[dcs.a]\n[dcs.b]\n"))
	f.Add([]byte("x = = 1"))
	f.Add([]byte(`a."b.c" = [1, {d = 2}]` + "\n[[e]]\nf = 1\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		env := map[string]string{"CUSTOS_RESTAPI_ALLOWLIST": "a,b", "CUSTOS_ETCD3_HOSTS": string(data)}
		c, err := Parse("fuzz.toml", data, mapEnv(env))
		if err != nil {
			if _, ok := err.(Problems); !ok {
				t.Fatalf("error is %T, want Problems", err)
			}
			_ = err.Error()
			return
		}
		if _, err := c.DCSConfigJSON(); err != nil {
			t.Fatalf("a valid config's DCS section does not marshal: %v", err)
		}
		if _, err := json.Marshal(c); err != nil {
			t.Fatalf("a valid config does not marshal: %v", err)
		}
		_ = fmt.Sprintf("%+v %#v", c, c)
		_ = c.DCSProblem("a.b[1]", "x")
	})
}

func FuzzParseDynamic(f *testing.F) {
	f.Add([]byte(patroniCompact))
	f.Add([]byte(patronictlSpaced))
	f.Add([]byte(`{"ttl":"30min","slots":{"a":{}},"standby_cluster":null}`))
	f.Add([]byte(`{"loop_wait": 0, "retry_timeout": 0}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		// Whatever /config holds, the configuration the agent runs with
		// is valid when the one in effect was.
		last := DefaultDynamic()
		last.TTL, last.SynchronousMode = 45, SyncOn
		if over, ps := ParseDynamicOver(data, last); len(over.Validate()) > 0 {
			t.Fatalf("ParseDynamicOver(%q) = an invalid configuration: %v (problems %v)", data, over.Validate(), ps)
		}
		dyn, ps := ParseDynamic(data)
		if len(ps) > 0 {
			return
		}
		// What custos writes back must read back to the same values.
		out, err := json.Marshal(dyn)
		if err != nil {
			t.Fatalf("marshal: %v", err)
		}
		again, ps := ParseDynamic(out)
		if len(ps) > 0 {
			t.Fatalf("re-reading %s: %v", out, ps)
		}
		again.raw, dyn.raw = nil, nil
		again.PostgreSQL.raw, dyn.PostgreSQL.raw = nil, nil
		if again.StandbyCluster != nil && dyn.StandbyCluster != nil {
			again.StandbyCluster.raw, dyn.StandbyCluster.raw = nil, nil
		}
		a, _ := json.Marshal(again)
		b, _ := json.Marshal(dyn)
		if !reflect.DeepEqual(a, b) {
			t.Fatalf("round trip changed values:\n%s\n%s", b, a)
		}
	})
}
