//go:build linux

package callbacks

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/custos-ha/custos/plugin/sdk"
	"github.com/custos-ha/custos/plugin/sdk/callback"
	"github.com/custos-ha/custos/plugin/sdk/callback/callbacktest"
)

// execByMode puts three Exec receivers behind one section, so that the
// conformance kit can drive the exec callback: {"mode": "record"} runs a
// script that records its arguments, "block" one that sleeps, "fail" one
// that exits 1. Each gets the empty section an Exec takes.
type execByMode struct {
	modes map[string]*Exec
}

func (m *execByMode) pick(config []byte) (*Exec, error) {
	var sec map[string]any
	errs := &sdk.ConfigError{}
	if err := json.Unmarshal(config, &sec); err != nil {
		errs.Add("", "not a JSON table: %v", err)
		return nil, errs
	}
	var e *Exec
	for k, v := range sec {
		mode, _ := v.(string)
		switch {
		case k != "mode":
			errs.Add(k, "unknown key")
		case m.modes[mode] == nil:
			errs.Add(k, "unknown mode %v", v)
		default:
			e = m.modes[mode]
		}
	}
	if err := errs.OrNil(); err != nil {
		return nil, err
	}
	return e, nil
}

func (m *execByMode) Validate(ctx context.Context, config []byte) error {
	e, err := m.pick(config)
	if err != nil {
		return err
	}
	return e.Validate(ctx, nil)
}

func (m *execByMode) Deliver(ctx context.Context, config []byte, ev callback.Event) error {
	e, err := m.pick(config)
	if err != nil {
		return err
	}
	return e.Deliver(ctx, nil, ev)
}

func TestExecConformance(t *testing.T) {
	callbacktest.RunConformance(t, func(t *testing.T) callbacktest.Setup {
		dir := t.TempDir()
		out := filepath.Join(dir, "events")
		record := writeScript(t, dir, "record.sh", "echo \"$1 $2 $3\" >> "+out+"\n")
		block := writeScript(t, dir, "block.sh", "sleep 300\n")
		fail := writeScript(t, dir, "fail.sh", "echo failing >&2\nexit 1\n")
		modes := map[string]*Exec{}
		for mode, script := range map[string]string{"record": record, "block": block, "fail": fail} {
			scripts := map[string]string{}
			for _, a := range Actions {
				scripts[a] = script
			}
			e, err := NewExec(scripts, nil)
			if err != nil {
				t.Fatal(err)
			}
			modes[mode] = e
		}
		return callbacktest.Setup{
			Receiver:    &execByMode{modes: modes},
			Config:      []byte(`{"mode": "record"}`),
			BlockConfig: []byte(`{"mode": "block"}`),
			FailConfig:  []byte(`{"mode": "fail"}`),
			Observed: func(t *testing.T) []callback.Event {
				data, err := os.ReadFile(out)
				if os.IsNotExist(err) {
					return nil
				}
				if err != nil {
					t.Fatal(err)
				}
				var evs []callback.Event
				for line := range strings.SplitSeq(strings.TrimSpace(string(data)), "\n") {
					f := strings.Fields(line)
					if len(f) != 3 {
						t.Fatalf("recorded line %q", line)
					}
					evs = append(evs, callback.Event{Action: f[0], Role: f[1], Scope: f[2]})
				}
				return evs
			},
			// The script's arguments carry action, role and scope only.
			Hidden: callbacktest.FieldMember | callbacktest.FieldSeq | callbacktest.FieldTime,
		}
	})
}
