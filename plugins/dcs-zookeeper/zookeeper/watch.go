package zookeeper

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/custos-ha/custos/plugin/sdk/dcs"
)

// Watch implements dcs.Backend.
//
// github.com/go-zookeeper/zk v1.0.4 has no AddWatch (ZooKeeper 3.6's
// persistent recursive watches), so Watch keeps one-shot watches armed: a
// child watch on the prefix and on members/ (an exists watch while either
// is absent) and a data watch on every znode below them. A watch that fires
// is armed again by reading the znode, and what the read shows is compared
// with what was known: a change that happened before the watch was armed
// again is seen in that read, so no change is lost, though two quick
// changes of one znode may come as one event carrying the later version.
// All events of the session reach Watch in the server's order through the
// client's event callback. Across a reconnection within the session the
// client re-registers the watches with the last zxid it saw, and the server
// fires those whose znodes changed meanwhile.
//
// Watch returns nil when ctx ends, and an error wrapping dcs.ErrUnavailable
// when the session ends (expired, closed for a missed renewal, or Close).
func (b *Backend) Watch(ctx context.Context, fn func(dcs.Event)) error {
	prefix, _ := b.paths()
	setup, cancel := b.begin(ctx)
	s, err := b.session(setup)
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("watching %s: %w", prefix, mapErr(err))
	}
	sub := s.subscribe()
	defer s.unsubscribe(sub)

	w := &watcher{
		b:          b,
		s:          s,
		prefix:     prefix,
		membersDir: prefix + "/" + strings.TrimSuffix(dcs.MembersPath, "/"),
		known:      map[string]int32{},
		fn:         fn,
	}
	stop := func(err error) error {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("watching %s: %w", prefix, mapErr(err))
	}
	if err := w.relist(ctx, w.prefix, false); err != nil {
		return stop(err)
	}
	if err := w.relist(ctx, w.membersDir, false); err != nil {
		return stop(err)
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-s.lostCh:
			return stop(s.lostError())
		case <-sub.wake:
			for _, ev := range sub.take() {
				if err := w.handle(ctx, ev); err != nil {
					return stop(err)
				}
			}
		}
	}
}

// watcher is the state of one Watch call.
type watcher struct {
	b          *Backend
	s          *session
	prefix     string
	membersDir string
	// known maps the relative path of every znode seen to its version.
	known map[string]int32
	fn    func(dcs.Event)
}

// handle processes one event of the session.
func (w *watcher) handle(ctx context.Context, ev zk.Event) error {
	switch {
	case ev.Type == zk.EventNotWatching:
		return fmt.Errorf("the session's watches were dropped (%v): %w", ev.Err, errNoSession)
	case ev.Path == w.prefix || ev.Path == w.membersDir:
		if ev.Type == zk.EventNodeDataChanged {
			return nil // a directory's own data means nothing
		}
		return w.relist(ctx, ev.Path, true)
	}
	rel, ok := w.rel(ev.Path)
	if !ok {
		return nil
	}
	switch ev.Type {
	case zk.EventNodeDataChanged:
		return w.refresh(ctx, rel, true)
	case zk.EventNodeDeleted:
		w.gone(rel, true)
	}
	return nil
}

// rel returns the path relative to the prefix of a znode Watch covers: a
// direct child of the prefix other than members/, or a direct child of
// members/.
func (w *watcher) rel(path string) (string, bool) {
	if name, ok := strings.CutPrefix(path, w.membersDir+"/"); ok && name != "" && !strings.Contains(name, "/") {
		return dcs.MembersPath + name, true
	}
	if name, ok := strings.CutPrefix(path, w.prefix+"/"); ok && name != "" && !strings.Contains(name, "/") && name != "members" {
		return name, true
	}
	return "", false
}

// abs returns the znode path of a relative path.
func (w *watcher) abs(rel string) string { return w.prefix + "/" + rel }

// dirOf returns the directory znode a relative path lives in.
func (w *watcher) dirOf(rel string) string {
	if strings.HasPrefix(rel, dcs.MembersPath) {
		return w.membersDir
	}
	return w.prefix
}

// relist arms the child watch of dir (or its exists watch while it is
// absent) and reconciles its children with what is known.
func (w *watcher) relist(ctx context.Context, dir string, emit bool) error {
	var children []string
	err := w.retry(ctx, func(ctx context.Context) error {
		var err error
		children, err = armDir(ctx, w.s, dir)
		return err
	})
	if err != nil {
		return fmt.Errorf("listing %s: %w", dir, err)
	}
	present := map[string]bool{}
	for _, name := range children {
		if rel, ok := w.rel(dir + "/" + name); ok {
			present[rel] = true
		}
	}
	var gone, added []string
	for rel := range w.known {
		if w.dirOf(rel) == dir && !present[rel] {
			gone = append(gone, rel)
		}
	}
	for rel := range present {
		if _, ok := w.known[rel]; !ok {
			added = append(added, rel)
		}
	}
	sort.Strings(gone)
	sort.Strings(added)
	for _, rel := range gone {
		w.gone(rel, emit)
	}
	for _, rel := range added {
		if err := w.refresh(ctx, rel, emit); err != nil {
			return err
		}
	}
	return nil
}

// armDir lists dir with a child watch; while dir is absent it sets an
// exists watch instead and returns no children.
func armDir(ctx context.Context, s *session, dir string) ([]string, error) {
	for {
		children, err := do(ctx, s, func(c *zk.Conn) ([]string, error) {
			children, _, _, err := c.ChildrenW(dir)
			return children, err
		})
		if !errors.Is(err, zk.ErrNoNode) {
			return children, err
		}
		exists, err := do(ctx, s, func(c *zk.Conn) (bool, error) {
			exists, _, _, err := c.ExistsW(dir)
			return exists, err
		})
		if err != nil || !exists {
			return nil, err
		}
		// Created between the two calls: list it.
	}
}

// refresh reads a znode with a data watch and reports a put when its
// version is new to this watcher, a delete when it is gone.
func (w *watcher) refresh(ctx context.Context, rel string, emit bool) error {
	var (
		st     *zk.Stat
		absent bool
	)
	err := w.retry(ctx, func(ctx context.Context) error {
		var err error
		st, err = do(ctx, w.s, func(c *zk.Conn) (*zk.Stat, error) {
			_, st, _, err := c.GetW(w.abs(rel))
			return st, err
		})
		if errors.Is(err, zk.ErrNoNode) {
			absent, err = true, nil
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("reading %s: %w", w.abs(rel), err)
	}
	if absent {
		// The parent's child watch reports it if it comes back.
		w.gone(rel, emit)
		return nil
	}
	if old, ok := w.known[rel]; ok && old == st.Version {
		return nil
	}
	w.known[rel] = st.Version
	if emit {
		w.fn(dcs.Event{Type: dcs.EventPut, Path: rel, Version: strconv.Itoa(int(st.Version))})
	}
	return nil
}

// gone forgets a znode and reports its deletion.
func (w *watcher) gone(rel string, emit bool) {
	if _, ok := w.known[rel]; !ok {
		return
	}
	delete(w.known, rel)
	if emit {
		w.fn(dcs.Event{Type: dcs.EventDelete, Path: rel})
	}
}

// retry runs one read of the watcher within retry_timeout, again after a
// broken connection as long as the session lives (the client re-registers
// the watches when it reconnects).
func (w *watcher) retry(ctx context.Context, fn func(ctx context.Context) error) error {
	ctx, cancel := w.b.begin(ctx)
	defer cancel()
	for {
		err := fn(ctx)
		if err == nil || !retryable(err) || w.s.isLost() {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(retryPause):
		}
	}
}
