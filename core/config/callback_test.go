package config

import (
	"strings"
	"testing"
	"time"
)

func TestCallbackKeys(t *testing.T) {
	src := appendText(`
[postgresql.callbacks]
on_role_change = "/usr/local/bin/cb.sh --vip '10.0.0.9/24'"
timeout = "90s"

[callback.http]
url = "https://ops.example.com/hook"
timeout = 5

[callback.http.retry]
attempts = 3

[callback.pagerduty]
routing_key = "abc"
`)(minimal)
	c := mustParse(t, src, nil)
	if got := c.PostgreSQL.Callbacks.Timeout; got != 90*time.Second {
		t.Errorf("postgresql.callbacks.timeout = %v", got)
	}
	if got := c.CallbackNames(); strings.Join(got, ",") != "http,pagerduty" {
		t.Errorf("CallbackNames() = %v", got)
	}
	for name, want := range map[string]struct {
		timeout time.Duration
		json    string
	}{
		"http":      {5 * time.Second, `{"retry":{"attempts":3},"url":"https://ops.example.com/hook"}`},
		"pagerduty": {DefaultCallbackPluginTimeout, `{"routing_key":"abc"}`},
	} {
		s := c.Callback[name]
		if s.Name() != name || s.Timeout != want.timeout {
			t.Errorf("[callback.%s]: name %q, timeout %v, want %v", name, s.Name(), s.Timeout, want.timeout)
		}
		js, err := s.ConfigJSON()
		if err != nil {
			t.Fatal(err)
		}
		// The host's timeout key is not handed to the plugin.
		if string(js) != want.json {
			t.Errorf("[callback.%s] JSON = %s, want %s", name, js, want.json)
		}
	}

	// A problem the plugin reports lands on the key's line.
	p := c.CallbackProblem("http", "retry.attempts", "unknown key")
	if p.Path != "callback.http.retry.attempts" || p.Line != lineWith(t, src, "attempts = 3") || p.Message != "unknown key" {
		t.Errorf("CallbackProblem = %+v", p)
	}
	if p := c.CallbackProblem("http", "", "plugin validation failed"); p.Path != "callback.http" || p.Line != lineWith(t, src, "[callback.http]") {
		t.Errorf("CallbackProblem for the section = %+v", p)
	}
}

func TestCallbackDefaults(t *testing.T) {
	c := mustParse(t, minimal, nil)
	if got := c.PostgreSQL.Callbacks.Timeout; got != 60*time.Second {
		t.Errorf("postgresql.callbacks.timeout default = %v", got)
	}
	if len(c.Callback) != 0 || len(c.CallbackNames()) != 0 {
		t.Errorf("callback sections without any configured: %v", c.Callback)
	}
}

func TestCallbackProblems(t *testing.T) {
	tests := []struct {
		name    string
		edit    func(string) string
		path    string
		marker  string
		message string
	}{
		{"unknown key in postgresql.callbacks", appendText("\n[postgresql.callbacks]\non_promote = \"/x\" # <-\n"), "postgresql.callbacks.on_promote", "# <-", "unknown key"},
		{"bad script timeout", appendText("\n[postgresql.callbacks]\ntimeout = \"a while\" # <-\n"), "postgresql.callbacks.timeout", "# <-", `bad duration "a while"`},
		{"zero script timeout", appendText("\n[postgresql.callbacks]\ntimeout = 0 # <-\n"), "postgresql.callbacks.timeout", "# <-", "out of range"},
		{"script that does not split", appendText("\n[postgresql.callbacks]\non_start = \"/x 'unterminated\" # <-\n"), "postgresql.callbacks.on_start", "# <-", "invalid command"},
		{"hook naming no program", appendPG(`pre_promote = "   " # <-`), "postgresql.pre_promote", "# <-", "names no program"},
		{"before_stop that does not split", appendPG(`before_stop = '/x "a' # <-`), "postgresql.before_stop", "# <-", "invalid command"},
		{"post_init alias that does not split", appendText("\n[bootstrap]\npost_init = \"/x \\\\\" # <-\n"), "bootstrap.post_init", "# <-", "invalid command"},
		{"bad plugin timeout", appendText("\n[callback.http]\nurl = \"x\"\ntimeout = \"soon\" # <-\n"), "callback.http.timeout", "# <-", `bad duration "soon"`},
		{"negative plugin timeout", appendText("\n[callback.http]\ntimeout = \"-1s\" # <-\n"), "callback.http.timeout", "# <-", "out of range"},
		{"plugin timeout of the wrong type", appendText("\n[callback.http]\ntimeout = [1] # <-\n"), "callback.http.timeout", "# <-", "wrong type"},
		{"the built-in's name", appendText("\n[callback.exec] # <-\nx = 1\n"), "callback.exec", "# <-", "built-in callback"},
		{"bad plugin name", appendText("\n[callback.\"a b\"] # <-\nx = 1\n"), `callback."a b"`, "# <-", "invalid callback plugin name"},
		{"callback section not a table", appendText("\n[callback]\nhttp = \"x\" # <-\n"), "callback.http", "# <-", "wrong type: expected a table"},
		{"callback not a table", appendTop(`callback = "x" # <-`), "callback", "# <-", "wrong type"},
		{"good scripts", appendText("\n[postgresql.callbacks]\non_start = \"/x 'a b' \\\"c\\\"\"\ntimeout = \"1m\"\n"), "", "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			src := tc.edit(minimal)
			if tc.path == "" {
				mustParse(t, src, nil)
				return
			}
			ps := problemsOf(t, src, nil)
			if len(ps) != 1 {
				t.Fatalf("want exactly one problem, got:\n%v", ps)
			}
			if ps[0].Path != tc.path || !strings.Contains(ps[0].Message, tc.message) {
				t.Fatalf("problem %v, want %s: ...%s...", ps[0], tc.path, tc.message)
			}
			if want := lineWith(t, src, tc.marker); ps[0].Line != want {
				t.Errorf("line %d, want %d (%v)", ps[0].Line, want, ps[0])
			}
		})
	}
}
