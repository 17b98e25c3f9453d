//go:build integration

package plugins

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/custos-ha/custos/core/callbacks"
	"github.com/custos-ha/custos/plugin/sdk"
	"github.com/custos-ha/custos/plugin/sdk/callback"
	"github.com/custos-ha/custos/testkit/poll"
)

// recorded reads the events the test plugin's callback mode handled.
func recorded(t *testing.T, path string) []callback.Event {
	t.Helper()
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	var out []callback.Event
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var ev callback.Event
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatalf("recorded line %q: %v", sc.Text(), err)
		}
		out = append(out, ev)
	}
	return out
}

func recordedSeqs(t *testing.T, path string) string {
	t.Helper()
	var seqs []string
	for _, ev := range recorded(t, path) {
		seqs = append(seqs, ev.Action+"#"+strconv.FormatUint(ev.Seq, 10))
	}
	return strings.Join(seqs, " ")
}

// installCallback installs the test plugin in its callback mode as
// custos-plugin-callback-memory.
func installCallback(t *testing.T, th *testHost, k knobs) (Binary, string) {
	t.Helper()
	events := filepath.Join(t.TempDir(), "events")
	k.CallbackEvents = events
	return installPlugin(t, th.dir, "callback-memory", &k), events
}

func TestFindCallback(t *testing.T) {
	th := newTestHost(t, nil)
	installPlugin(t, th.dir, "dcs-memory", nil)
	_, events := installCallback(t, th, knobs{})
	ctx := context.Background()

	p, err := th.FindCallback(ctx, "memory")
	if err != nil {
		t.Fatal(err)
	}
	defer p.Kill()
	if !p.Identity.Serves(sdk.KindCallback) || p.Binary.Name != "callback-memory" {
		t.Fatalf("found %s (%s)", p.Binary.Name, p.Identity)
	}
	r, err := p.Callback()
	if err != nil {
		t.Fatal(err)
	}
	err = r.Validate(ctx, []byte(`{"fail": "x", "bogus": 1}`))
	var cfgErr *sdk.ConfigError
	if !errors.As(err, &cfgErr) || len(cfgErr.Problems) != 1 || cfgErr.Problems[0].Path != "bogus" {
		t.Fatalf("Validate with an unknown key: %#v", err)
	}
	ev := callback.Event{Action: callback.ActionStart, Role: callback.RoleReplica, Scope: "demo", Member: "m1", Seq: 1, Time: time.Now()}
	if err := r.Deliver(ctx, []byte(`{}`), ev); err != nil {
		t.Fatal(err)
	}
	if got := recordedSeqs(t, events); got != "on_start#1" {
		t.Errorf("recorded %q", got)
	}

	// The DCS plugin is no callback plugin.
	if _, err := th.FindCallback(ctx, "other"); err == nil || !strings.Contains(err.Error(), `no callback plugin "other"`) {
		t.Errorf("FindCallback of a missing plugin: %v", err)
	}
	dcsPlugin, err := th.FindDCS(ctx, "memory")
	if err != nil {
		t.Fatal(err)
	}
	defer dcsPlugin.Kill()
	if _, err := dcsPlugin.Callback(); err == nil || !strings.Contains(err.Error(), "does not serve kind callback") {
		t.Errorf("Callback() of a DCS plugin: %v", err)
	}
}

// A callback plugin killed while it delivers an event gets the same event
// again once it is back, and no event is lost or handled twice.
func TestSupervisedCallbackRedeliversAfterAKill(t *testing.T) {
	th := newTestHost(t, nil)
	// Every process counts as having run fine: the plugin is killed a
	// moment after its start.
	th.restartStable = 0
	hangFile := filepath.Join(t.TempDir(), "hang")
	bin, events := installCallback(t, th, knobs{})
	ctx := context.Background()
	s, err := th.OpenCallback(ctx, "memory")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close(context.Background()) })

	d, err := callbacks.NewDispatcher(callbacks.Options{Scope: "demo", Member: "m1", Logger: th.logger},
		callbacks.Sink{Name: "memory", Receiver: s, Config: []byte(`{}`), Timeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	d.Emit(callback.ActionStart, callback.RoleReplica)
	poll.Eventually(t, 10*time.Second, "event 1 handled", func() bool { return recordedSeqs(t, events) == "on_start#1" })

	// The next process hangs in Deliver: start one like that.
	setKnobs(t, bin.Path, knobs{CallbackEvents: events, HangWhile: hangFile})
	if err := os.WriteFile(hangFile, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	pid := s.Pid()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	poll.Eventually(t, 10*time.Second, "a hanging plugin", func() bool { return s.Pid() > 0 && s.Pid() != pid })
	d.Emit(callback.ActionRoleChange, callback.RolePrimary)
	poll.Eventually(t, 10*time.Second, "event 2 reaching the plugin", func() bool {
		return len(th.logs.withMessage(t, "hanging", "call", "deliver")) == 1
	})

	// Kill it mid-delivery; the process after it does not hang.
	setKnobs(t, bin.Path, knobs{CallbackEvents: events})
	hung := s.Pid()
	if err := syscall.Kill(hung, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	poll.Eventually(t, 15*time.Second, "event 2 handled by the next process", func() bool {
		return recordedSeqs(t, events) == "on_start#1 on_role_change#2"
	})
	d.Emit(callback.ActionReload, callback.RolePrimary)
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := d.Close(cctx); err != nil {
		t.Fatal(err)
	}

	got := recorded(t, events)
	if s := recordedSeqs(t, events); s != "on_start#1 on_role_change#2 on_reload#3" {
		t.Fatalf("handled %q", s)
	}
	if got[1].Role != callback.RolePrimary || got[1].Scope != "demo" || got[1].Member != "m1" || got[1].Time.IsZero() {
		t.Errorf("redelivered event %+v", got[1])
	}
	st := d.Status()[0]
	if st.Delivered != 3 || st.Failed != 0 {
		t.Errorf("status %+v", st)
	}
	if s.Restarts() != 2 {
		t.Errorf("restarts %d, want 2", s.Restarts())
	}
	// Event 2 went to the process that hung and was killed, then to the
	// next one.
	if n := len(th.logs.withMessage(t, "delivering", "seq", "2")); n != 2 {
		t.Errorf("event 2 reached a plugin process %d times, want 2", n)
	}
	if len(th.logs.withMessage(t, "callback delivered", "seq", "2")) != 1 {
		t.Errorf("event 2 not logged as delivered once")
	}
}

// A plugin's own error is the event's failure: not delivered again.
func TestSupervisedCallbackPluginErrorIsNotRetried(t *testing.T) {
	th := newTestHost(t, nil)
	_, events := installCallback(t, th, knobs{})
	s, err := th.OpenCallback(context.Background(), "memory")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close(context.Background()) })
	d, err := callbacks.NewDispatcher(callbacks.Options{Scope: "demo", Member: "m1", Logger: th.logger},
		callbacks.Sink{Name: "memory", Receiver: s, Config: []byte(`{"fail": "webhook answered 503"}`), Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	d.Emit(callback.ActionStart, callback.RoleReplica)
	if err := d.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	st := d.Status()[0]
	if st.Failed != 1 || st.Redeliveries != 0 || st.LastFailed == nil || !strings.Contains(st.LastFailed.Error, "webhook answered 503") {
		t.Errorf("status %+v, last failed %+v", st, st.LastFailed)
	}
	if got := recordedSeqs(t, events); got != "" {
		t.Errorf("handled %q", got)
	}
	if n := len(th.logs.withMessage(t, "delivering", "seq", "1")); n != 1 {
		t.Errorf("the plugin got event 1 %d times", n)
	}
}

// A plugin that cannot come back fails a delivery with ErrReceiverGone at
// its deadline, so the dispatcher keeps the event.
func TestSupervisedCallbackThatStaysDown(t *testing.T) {
	th := newTestHost(t, nil)
	th.restartStable = 0
	bin, events := installCallback(t, th, knobs{})
	s, err := th.OpenCallback(context.Background(), "memory")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close(context.Background()) })
	setKnobs(t, bin.Path, knobs{CallbackEvents: events, CrashAtStart: true})
	if err := syscall.Kill(s.Pid(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	ev := callback.Event{Action: callback.ActionStop, Role: callback.RoleReplica, Scope: "demo", Member: "m1", Seq: 1, Time: time.Now()}
	err = s.Deliver(ctx, []byte(`{}`), ev)
	if !errors.Is(err, callbacks.ErrReceiverGone) || !strings.Contains(err.Error(), "callback plugin callback-memory is not running") {
		t.Fatalf("Deliver while the plugin is down: %v", err)
	}

	// Once the binary starts again, so does the delivery.
	setKnobs(t, bin.Path, knobs{CallbackEvents: events})
	dctx, dcancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer dcancel()
	if err := s.Deliver(dctx, []byte(`{}`), ev); err != nil {
		t.Fatal(err)
	}
	if got := recordedSeqs(t, events); got != "on_stop#1" {
		t.Errorf("handled %q", got)
	}
}
