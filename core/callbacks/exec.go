package callbacks

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/hashicorp/go-hclog"

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
type Exec struct {
	scripts map[string][]string // action -> words
	logger  hclog.Logger
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

// Validate implements callback.Receiver. The scripts are configured in
// [postgresql.callbacks], so the section handed over must be empty.
func (e *Exec) Validate(_ context.Context, config []byte) error {
	switch string(bytes.TrimSpace(config)) {
	case "", "null", "{}":
		return nil
	}
	return fmt.Errorf("the built-in callback takes no configuration section (its scripts are postgresql.callbacks)")
}

// Deliver implements callback.Receiver.
func (e *Exec) Deliver(ctx context.Context, _ []byte, ev callback.Event) error {
	words, ok := e.scripts[ev.Action]
	if !ok {
		return nil
	}
	argv := append(slices.Clone(words), ev.Action, ev.Role, ev.Scope)
	_, err := Run(ctx, Command{
		Name: ev.Action + " callback",
		Argv: argv,
		Output: func(line string) {
			e.logger.Info("callback output", "action", ev.Action, "seq", ev.Seq, "line", line)
		},
	})
	return err
}
