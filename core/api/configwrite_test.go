package api

import (
	"errors"
	"net/http"
	"testing"

	"github.com/custos-ha/custos/core/cluster"
	"github.com/custos-ha/custos/plugin/sdk/dcs"
)

// baseConfig is the test cluster's /config (version 4).
const baseConfig = `{"ttl":30,"loop_wait":10,"retry_timeout":10,"maximum_lag_on_failover":1048576,"postgresql":{"use_pg_rewind":true}}`

func TestPatchConfig(t *testing.T) {
	cases := []struct {
		name, stored, patch string
		// want is the answer and the value written over version 4; ""
		// when nothing is written.
		want, written string
	}{
		{
			name: "patronictl pause", stored: baseConfig, patch: `{"pause": true}`,
			want:    `{"loop_wait":10,"maximum_lag_on_failover":1048576,"pause":true,"postgresql":{"use_pg_rewind":true},"retry_timeout":10,"ttl":30}`,
			written: `{"loop_wait":10,"maximum_lag_on_failover":1048576,"pause":true,"postgresql":{"use_pg_rewind":true},"retry_timeout":10,"ttl":30}`,
		},
		{
			name: "patronictl resume", stored: `{"ttl":30,"pause":true}`, patch: `{"pause": null}`,
			want: `{"ttl":30}`, written: `{"ttl":30}`,
		},
		{
			name: "deep merge and deletes", stored: `{"ttl":30,"postgresql":{"use_pg_rewind":true,"parameters":{"work_mem":"4MB","max_connections":100}}}`,
			patch:   `{"ttl":40,"postgresql":{"parameters":{"work_mem":"8MB","max_connections":null,"shared_buffers":"1GB"}}}`,
			want:    `{"postgresql":{"parameters":{"shared_buffers":"1GB","work_mem":"8MB"},"use_pg_rewind":true},"ttl":40}`,
			written: `{"postgresql":{"parameters":{"shared_buffers":"1GB","work_mem":"8MB"},"use_pg_rewind":true},"ttl":40}`,
		},
		{
			name: "new object without its nulls", stored: `{"ttl":30}`, patch: `{"postgresql":{"parameters":{"work_mem":"8MB","wal_level":null}}}`,
			want: `{"postgresql":{"parameters":{"work_mem":"8MB"}},"ttl":30}`, written: `{"postgresql":{"parameters":{"work_mem":"8MB"}},"ttl":30}`,
		},
		{
			name: "object replaces a scalar", stored: `{"ttl":30,"slots":"x"}`, patch: `{"slots":{"s1":{"type":"physical"}}}`,
			want: `{"slots":{"s1":{"type":"physical"}},"ttl":30}`, written: `{"slots":{"s1":{"type":"physical"}},"ttl":30}`,
		},
		{
			name: "same text is no change", stored: baseConfig, patch: `{"ttl":"30","pause":null}`,
			want: `{"loop_wait":10,"maximum_lag_on_failover":1048576,"postgresql":{"use_pg_rewind":true},"retry_timeout":10,"ttl":30}`,
		},
		{
			name: "numbers kept as written", stored: `{"ttl":30}`, patch: `{"maximum_lag_on_failover":10485760000,"postgresql":{"parameters":{"random_page_cost":1.10}}}`,
			want:    `{"maximum_lag_on_failover":10485760000,"postgresql":{"parameters":{"random_page_cost":1.10}},"ttl":30}`,
			written: `{"maximum_lag_on_failover":10485760000,"postgresql":{"parameters":{"random_page_cost":1.10}},"ttl":30}`,
		},
		{
			name: "an old problem does not block", stored: `{"ttl":10,"loop_wait":10,"retry_timeout":10}`, patch: `{"pause":true}`,
			want: `{"loop_wait":10,"pause":true,"retry_timeout":10,"ttl":10}`, written: `{"loop_wait":10,"pause":true,"retry_timeout":10,"ttl":10}`,
		},
		{
			name: "no HTML escaping", stored: `{"ttl":30}`, patch: `{"standby_cluster":{"restore_command":"cp /a/%f %p && true > /dev/null"}}`,
			want:    `{"standby_cluster":{"restore_command":"cp /a/%f %p \u0026\u0026 true \u003e /dev/null"},"ttl":30}`,
			written: `{"standby_cluster":{"restore_command":"cp /a/%f %p && true > /dev/null"},"ttl":30}`,
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			op := &fakeOperator{clusters: []*cluster.Cluster{opCluster(t, withConfig(c.stored))}}
			rec := sendRecorded(newOpServer(t, op, ServerConfig{}), http.MethodPatch, "/config", c.patch, nil)
			expectAnswer(t, "PATCH /config "+c.patch, rec.Code, rec.Body.String(), 200, c.want)
			if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
			switch {
			case c.written == "" && len(op.configWrites) != 0:
				t.Errorf("wrote %v, want no write", op.configWrites)
			case c.written != "" && (len(op.configWrites) != 1 || op.configWrites[0] != (configWrite{c.written, "4"})):
				t.Errorf("wrote %v, want %s over version 4", op.configWrites, c.written)
			}
			if op.wakes != 1 {
				t.Errorf("woke the loop %d times, want once", op.wakes)
			}
		})
	}
}

func TestPatchConfigRefused(t *testing.T) {
	cases := []struct {
		name, stored, patch string
		writeErr            error
		code                int
		msg                 string
	}{
		{"ttl below the minimum", baseConfig, `{"ttl":0}`, nil, 400,
			"ttl: out of range: 0 is below the minimum 1"},
		{"timing rule", baseConfig, `{"loop_wait":15}`, nil, 400,
			"ttl: conflicting values: loop_wait + 2*retry_timeout must not exceed ttl, but 15 + 2*10 = 35 > 30 (raise ttl or lower loop_wait/retry_timeout)"},
		{"wrong type", baseConfig, `{"loop_wait":"often"}`, nil, 400, ""},
		{"two problems", baseConfig, `{"retry_timeout":0,"synchronous_node_count":0}`, nil, 400,
			"retry_timeout: out of range: 0 is below the minimum 1\nsynchronous_node_count: out of range: 0 is below the minimum 1"},
		{"concurrent change", baseConfig, `{"ttl":40}`, errors.Join(errors.New("compare-and-set /config"), dcs.ErrVersionMismatch), 409,
			"Conflict: /config changed since it was read; read it again and retry"},
		{"DCS down while writing", baseConfig, `{"ttl":40}`, dcs.ErrUnavailable, 503, "writing /config: " + dcs.ErrUnavailable.Error()},
		{"no /config", "", `{"ttl":40}`, nil, 503, "no valid /config in the DCS to patch"},
		{"/config not an object", `[1,2]`, `{"ttl":40}`, nil, 503, "no valid /config in the DCS to patch"},
		{"empty patch", baseConfig, `{}`, nil, 400, "the request body is an empty JSON object"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			edit := withConfig(c.stored)
			if c.stored == "" {
				edit = func(raw *dcs.Cluster) { raw.Config = nil }
			}
			op := &fakeOperator{clusters: []*cluster.Cluster{opCluster(t, edit)}, configErr: c.writeErr}
			code, body := send(newOpServer(t, op, ServerConfig{}), http.MethodPatch, "/config", c.patch)
			if c.msg == "" {
				// The decoder's wording; the key path is what matters.
				if code != c.code || len(body) < 10 || body[:10] != "loop_wait:" {
					t.Errorf("PATCH /config %s = %d %q, want %d naming loop_wait", c.patch, code, body, c.code)
				}
			} else {
				expectAnswer(t, "PATCH /config "+c.patch, code, body, c.code, c.msg)
			}
			if c.writeErr == nil && len(op.configWrites) != 0 {
				t.Errorf("wrote %v", op.configWrites)
			}
			if op.wakes != 0 {
				t.Errorf("woke the loop after a refusal")
			}
		})
	}
	op := &fakeOperator{clusters: []*cluster.Cluster{opCluster(t, nil)}}
	rec := sendRecorded(newOpServer(t, op, ServerConfig{}), http.MethodPatch, "/config", `{"ttl":40}`, func(r *http.Request) { r.ContentLength = -1 })
	if rec.Code != http.StatusLengthRequired {
		t.Errorf("PATCH /config without Content-Length = %d %q, want 411", rec.Code, rec.Body)
	}
}

func TestPutConfig(t *testing.T) {
	op := &fakeOperator{clusters: []*cluster.Cluster{opCluster(t, nil)}}
	s := newOpServer(t, op, ServerConfig{})
	full := `{"ttl": 40, "loop_wait": 5, "retry_timeout": 10, "postgresql": {"parameters": {"max_connections": 200}}}`
	code, body := send(s, http.MethodPut, "/config", full)
	expectAnswer(t, "PUT /config", code, body, 200, `{"loop_wait":5,"postgresql":{"parameters":{"max_connections":200}},"retry_timeout":10,"ttl":40}`)
	want := configWrite{`{"loop_wait":5,"postgresql":{"parameters":{"max_connections":200}},"retry_timeout":10,"ttl":40}`, ""}
	if len(op.configWrites) != 1 || op.configWrites[0] != want || op.wakes != 1 {
		t.Errorf("writes %v wakes %d, want one unconditional write and a wake-up", op.configWrites, op.wakes)
	}

	// The stored value again: nothing to write.
	op = &fakeOperator{clusters: []*cluster.Cluster{opCluster(t, nil)}}
	code, body = send(newOpServer(t, op, ServerConfig{}), http.MethodPut, "/config", baseConfig)
	if code != 200 || len(op.configWrites) != 0 {
		t.Errorf("PUT of the stored /config = %d %q, writes %v", code, body, op.configWrites)
	}

	op = &fakeOperator{clusters: []*cluster.Cluster{opCluster(t, nil)}}
	code, body = send(newOpServer(t, op, ServerConfig{}), http.MethodPut, "/config", `{"ttl":30,"loop_wait":30}`)
	expectAnswer(t, "PUT /config breaking the timing rule", code, body, 400,
		"ttl: conflicting values: loop_wait + 2*retry_timeout must not exceed ttl, but 30 + 2*10 = 50 > 30 (raise ttl or lower loop_wait/retry_timeout)")
	if len(op.configWrites) != 0 || op.touched() {
		t.Errorf("an invalid PUT reached the operator: %v", op.configWrites)
	}

	op = &fakeOperator{clusters: []*cluster.Cluster{opCluster(t, nil)}, configErr: dcs.ErrUnavailable}
	code, _ = send(newOpServer(t, op, ServerConfig{}), http.MethodPut, "/config", full)
	if code != http.StatusBadGateway {
		t.Errorf("PUT /config with a failing write = %d, want 502", code)
	}

	// The DCS cannot be read: the write goes ahead.
	op = &fakeOperator{readErr: dcs.ErrUnavailable}
	code, _ = send(newOpServer(t, op, ServerConfig{}), http.MethodPut, "/config", full)
	if code != 200 || len(op.configWrites) != 1 {
		t.Errorf("PUT /config with an unreadable DCS = %d, writes %v", code, op.configWrites)
	}
}
