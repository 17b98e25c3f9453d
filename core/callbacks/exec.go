package callbacks

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/hashicorp/go-hclog"

	"github.com/custos-ha/custos/plugin/sdk"
	"github.com/custos-ha/custos/plugin/sdk/callback"
)

// Actions lists the callback actions, in the order the configuration
// documents them.
var Actions = []string{
	callback.ActionStart,
	callback.ActionStop,
	callback.ActionRestart,
	callback.ActionReload,
	callback.ActionRoleChange,
}

// Exec is the built-in callback receiver: it runs the script configured
// for an event's action ([postgresql.callbacks]) as
//
//	<script words> <action> <role> <scope>
//
// with the agent's environment, in a process group of its own that is
// killed when the delivery's deadline passes. A non-zero exit is the
// event's failure. An event whose action has no script is delivered at
// once.
//
// As the contract asks of every receiver, an event whose Seq was handled
// already is not acted on again.
type Exec struct {
	scripts map[string][]string // action -> words
	logger  hclog.Logger

	mu      sync.Mutex
	handled uint64 // the highest Seq handled
}

var _ callback.Receiver = (*Exec)(nil)

// NewExec takes the script of each action (an empty one means none). It
// fails on an unknown action or a script that does not split into words.
// The scripts' output lines are logged through logger (nil discards).
func NewExec(scripts map[string]string, logger hclog.Logger) (*Exec, error) {
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	e := &Exec{scripts: map[string][]string{}, logger: logger}
	actions := make([]string, 0, len(scripts))
	for a := range scripts {
		actions = append(actions, a)
	}
	sort.Strings(actions)
	for _, action := range actions {
		line := scripts[action]
		if !slices.Contains(Actions, action) {
			return nil, fmt.Errorf("unknown callback action %q (want one of %s)", action, strings.Join(Actions, ", "))
		}
		if strings.TrimSpace(line) == "" {
			continue
		}
		words, err := Split(line)
		if err != nil {
			return nil, fmt.Errorf("callback %s: %w", action, err)
		}
		e.scripts[action] = words
	}
	return e, nil
}

// Empty reports whether no action has a script: such an Exec delivers
// every event at once, doing nothing, and need not be a sink.
func (e *Exec) Empty() bool { return len(e.scripts) == 0 }

// Validate implements callback.Receiver. The scripts are configured in
// [postgresql.callbacks]: the section handed over must be empty (nothing,
// null or {}); every key of another one is a problem.
func (e *Exec) Validate(_ context.Context, config []byte) error {
	return validateEmpty(config)
}

func validateEmpty(config []byte) error {
	trimmed := bytes.TrimSpace(config)
	if len(trimmed) == 0 || string(trimmed) == "null" {
		return nil
	}
	var table map[string]json.RawMessage
	if err := json.Unmarshal(trimmed, &table); err != nil {
		errs := &sdk.ConfigError{}
		errs.Add("", "the built-in callback takes no section (its scripts are postgresql.callbacks), got %s", trimmed)
		return errs
	}
	errs := &sdk.ConfigError{}
	for _, k := range slices.Sorted(maps.Keys(table)) {
		errs.Add(k, "unknown key: the built-in callback takes no section (its scripts are postgresql.callbacks)")
	}
	return errs.OrNil()
}

// Deliver implements callback.Receiver.
func (e *Exec) Deliver(ctx context.Context, config []byte, ev callback.Event) error {
	if err := validateEmpty(config); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s callback not started: %w", ev.Action, err)
	}
	e.mu.Lock()
	done := ev.Seq != 0 && ev.Seq <= e.handled
	e.mu.Unlock()
	if done {
		return nil
	}
	if words, ok := e.scripts[ev.Action]; ok {
		argv := append(slices.Clone(words), ev.Action, ev.Role, ev.Scope)
		_, err := Run(ctx, Command{
			Name: ev.Action + " callback",
			Argv: argv,
			Output: func(line string) {
				e.logger.Info("callback output", "action", ev.Action, "seq", ev.Seq, "line", line)
			},
		})
		if err != nil {
			return err
		}
	}
	e.mu.Lock()
	e.handled = max(e.handled, ev.Seq)
	e.mu.Unlock()
	return nil
}
