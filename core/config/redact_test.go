package config

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

// secretsInFull are the sensitive values of testdata/full.toml.
var secretsInFull = []string{
	"rest-pass", "rest-key-pass", "ctl-pass", "ctl-key-pass", "su-pass",
	"su-ssl-pass", "rep-pass", "rewind-pass", "etcd-pass", "conninfo-pass", "hook-secret",
}

func TestPrintedConfigIsRedacted(t *testing.T) {
	c, err := Load("testdata/full.toml", nil)
	if err != nil {
		t.Fatal(err)
	}
	js, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	outputs := map[string]string{"json": string(js)}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x"} {
		outputs["config "+verb] = fmt.Sprintf(verb, c)
		outputs["value "+verb] = fmt.Sprintf(verb, *c)
		outputs["postgresql "+verb] = fmt.Sprintf(verb, c.PostgreSQL)
		outputs["superuser "+verb] = fmt.Sprintf(verb, c.PostgreSQL.Authentication.Superuser)
		outputs["password "+verb] = fmt.Sprintf(verb, c.PostgreSQL.Authentication.Superuser.Password)
		outputs["dcs "+verb] = fmt.Sprintf(verb, c.DCS)
		outputs["callback "+verb] = fmt.Sprintf(verb, c.Callback)
		outputs["recovery_conf "+verb] = fmt.Sprintf(verb, c.PostgreSQL.RecoveryConf)
	}
	outputs["String"] = c.RESTAPI.Authentication.Password.String()
	outputs["GoString"] = c.RESTAPI.Authentication.Password.GoString()
	for name, out := range outputs {
		for _, s := range secretsInFull {
			if strings.Contains(out, s) {
				t.Errorf("%s output contains secret %q:\n%s", name, s, out)
			}
		}
	}
	// The redaction is visible, and the rest of the config is still there.
	if !strings.Contains(outputs["config %+v"], "Password:[redacted]") || !strings.Contains(outputs["config %+v"], "Username:postgres") {
		t.Errorf("%%+v lost the shape of the config:\n%s", outputs["config %+v"])
	}
	if !strings.Contains(outputs["dcs %v"], "hosts") {
		t.Errorf("DCS section not printed: %s", outputs["dcs %v"])
	}

	// The code that needs the values gets them.
	if c.PostgreSQL.Authentication.Superuser.Password.Value() != "su-pass" {
		t.Errorf("Value() does not give the real password")
	}
	hookJSON, _ := c.Callback["http"].ConfigJSON()
	if !strings.Contains(string(hookJSON), `"token":"hook-secret"`) {
		t.Errorf("the callback plugin's ConfigJSON must carry the real token: %s", hookJSON)
	}
	dcsJSON, _ := c.DCSConfigJSON()
	if !strings.Contains(string(dcsJSON), `"password":"etcd-pass"`) {
		t.Errorf("DCSConfigJSON must carry the real password: %s", dcsJSON)
	}
}

func TestEmptySecretPrintsEmpty(t *testing.T) {
	var s Secret
	if got := fmt.Sprintf("%v|%s|%+v", s, s, s); got != "||" {
		t.Errorf("empty secret printed %q", got)
	}
	if b, _ := json.Marshal(NewSecret("x")); string(b) != `"[redacted]"` {
		t.Errorf("JSON of a secret = %s", b)
	}
}
