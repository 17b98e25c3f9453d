package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"

	"github.com/hashicorp/go-hclog"

	"github.com/custos-ha/custos/plugin/sdk/callback"
	"github.com/custos-ha/custos/plugin/sdk/section"
)

// fileReceiver is the callback mode's receiver: it appends every event it
// handles to a file, one JSON line each, and skips a Seq it handled (as
// the contract asks). Its section takes one optional key, fail: Deliver
// then fails with that message.
type fileReceiver struct {
	path      string
	logger    hclog.Logger
	hangWhile string

	mu      sync.Mutex
	handled uint64
}

func parseSection(data []byte) (string, error) {
	var fail string
	d, err := section.New(data)
	if err != nil {
		return "", err
	}
	d.String("fail", &fail)
	return fail, d.Err()
}

func (r *fileReceiver) Validate(_ context.Context, config []byte) error {
	_, err := parseSection(config)
	return err
}

func (r *fileReceiver) Deliver(ctx context.Context, config []byte, ev callback.Event) error {
	fail, err := parseSection(config)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	r.logger.Info("delivering", "seq", ev.Seq, "action", ev.Action)
	r.mu.Lock()
	defer r.mu.Unlock()
	if ev.Seq <= r.handled {
		return nil
	}
	if fail != "" {
		return errors.New(fail)
	}
	hang(r.logger, r.hangWhile, "deliver")
	line, err := json.Marshal(ev)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(r.path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("recording event %d: %w", ev.Seq, err)
	}
	_, err = f.Write(append(line, '\n'))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("recording event %d: %w", ev.Seq, err)
	}
	r.handled = ev.Seq
	return nil
}
