package kube

import (
	"context"
	"errors"
	"fmt"
	"unicode/utf8"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/custos-ha/custos/plugin/sdk/dcs"
)

// decideFunc looks at an object as it is now (nil when absent) and returns
// the change to make, nil for none, or an error (a contract sentinel) that
// ends the update.
type decideFunc func(cur *object) (*change, error)

// update is a compare-and-set on a whole object: it reads the object,
// asks decide what to write, and writes it on the condition that the
// object did not change in between (a create when it was absent, a patch
// with its resourceVersion otherwise). When another writer got in first it
// reads again and asks again. It returns the object as written (or as read
// when decide wanted no change), and whether it exists.
func (c *connection) update(ctx context.Context, api objectAPI, name string, decide decideFunc) (object, bool, error) {
	for {
		var cur object
		err := c.call(ctx, func(ctx context.Context) error {
			var err error
			cur, err = api.get(ctx, name)
			return err
		})
		exists := err == nil
		switch {
		case apierrors.IsNotFound(err):
		case err != nil:
			return object{}, false, err
		}
		var curp *object
		if exists {
			curp = &cur
		}
		ch, err := decide(curp)
		if err != nil || ch == nil {
			return cur, exists, err
		}
		var written object
		if exists {
			patch, err := ch.mergePatch(cur.rv)
			if err != nil {
				return object{}, false, err
			}
			err = c.call(ctx, func(ctx context.Context) error {
				var err error
				written, err = api.patch(ctx, name, patch)
				return err
			})
			if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
				continue // changed or deleted since read: decide again
			}
			if err != nil {
				return object{}, false, err
			}
			return written, true, nil
		}
		err = c.call(ctx, func(ctx context.Context) error {
			var err error
			written, err = api.create(ctx, ch.created(name, c.labels))
			return err
		})
		if apierrors.IsAlreadyExists(err) {
			continue // someone created it first: decide again
		}
		if err != nil {
			return object{}, false, err
		}
		c.created(ctx, api, name)
		return written, true, nil
	}
}

// upsert writes a change without condition: a merge patch, or a create when
// the object is absent.
func (c *connection) upsert(ctx context.Context, api objectAPI, name string, ch *change) (object, error) {
	patch, err := ch.mergePatch("")
	if err != nil {
		return object{}, err
	}
	for {
		var written object
		err := c.call(ctx, func(ctx context.Context) error {
			var err error
			written, err = api.patch(ctx, name, patch)
			return err
		})
		if !apierrors.IsNotFound(err) {
			return written, err
		}
		err = c.call(ctx, func(ctx context.Context) error {
			var err error
			written, err = api.create(ctx, ch.created(name, c.labels))
			return err
		})
		if apierrors.IsAlreadyExists(err) {
			continue
		}
		if err == nil {
			c.created(ctx, api, name)
		}
		return written, err
	}
}

// labelChange re-asserts the cluster's labels on a patched object, as
// Patroni does on every write.
func (c *connection) labelChange() map[string]*string {
	out := make(map[string]*string, len(c.labels))
	for k, v := range c.labels {
		out[k] = &v
	}
	return out
}

// created runs after the backend created an object: in Endpoints mode the
// <scope>-config Endpoints need a Service of the same name, or Kubernetes'
// endpoints controller may delete them as orphans.
func (c *connection) created(ctx context.Context, api objectAPI, name string) {
	if api == c.kinds && c.layout.endpoints && name == c.layout.configName() {
		c.ensureConfigService(ctx)
	}
}

// ensureConfigService creates the headless Service <scope>-config once per
// connection, as Patroni does; it tolerates the Service existing or the
// creation being forbidden.
func (c *connection) ensureConfigService(ctx context.Context) {
	if !c.layout.endpoints || c.configService.Load() {
		return
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: c.layout.configName(), Labels: c.labels},
		Spec:       corev1.ServiceSpec{ClusterIP: corev1.ClusterIPNone},
	}
	err := c.call(ctx, func(ctx context.Context) error {
		_, err := c.client.CoreV1().Services(c.namespace).Create(ctx, svc, metav1.CreateOptions{})
		return err
	})
	switch {
	case err == nil, apierrors.IsAlreadyExists(err):
		c.configService.Store(true)
	case apierrors.IsForbidden(err):
		c.configService.Store(true)
		c.logger.Warn("not allowed to create the config Service; Kubernetes may delete the config Endpoints without it",
			"service", c.namespace+"/"+c.layout.configName(), "error", err)
	default:
		c.logger.Warn("creating the config Service failed; will try again", "service", c.namespace+"/"+c.layout.configName(), "error", err)
	}
}

// checkValue refuses what an annotation cannot hold as given.
func checkValue(key string, data []byte) error {
	if !utf8.Valid(data) {
		return fmt.Errorf("writing %s: the value is not valid UTF-8, which Kubernetes annotations cannot hold", key)
	}
	return nil
}

// keyVersion is the version of a key read from its object.
func keyVersion(k dcs.Key, o object, data []byte) string {
	if ownsObject(k) {
		return o.rv
	}
	return contentVersion(data)
}

// CompareAndSet writes a cluster-wide key if its version is still the given
// one (empty: only if absent). Keys that own their object (failover, sync)
// compare the object's resourceVersion; keys that share one compare their
// content version (see contentVersion). Either way the write itself is
// conditional on the object's resourceVersion, so the check and the write
// are one atomic step.
func (b *Backend) CompareAndSet(ctx context.Context, key dcs.Key, data []byte, version string) (string, error) {
	c, err := b.connection()
	if err != nil {
		return "", err
	}
	cod := codecOf(key)
	if cod == nil {
		return "", fmt.Errorf("compare-and-set: unknown key %q", key)
	}
	if err := checkValue(string(key), data); err != nil {
		return "", err
	}
	ctx, cancel := c.opContext(ctx)
	defer cancel()
	name := c.layout.objectOf(key)
	written, _, err := c.update(ctx, c.kinds, name, func(cur *object) (*change, error) {
		var ann map[string]string
		if cur != nil {
			ann = cur.annotations
		}
		curData, present := cod.decode(ann, cur != nil)
		switch {
		case version == "" && present:
			return nil, fmt.Errorf("creating %s: %w", key, dcs.ErrExists)
		case version != "" && !present:
			return nil, fmt.Errorf("compare-and-set %s at version %s: %w", key, version, dcs.ErrNotFound)
		case version != "" && keyVersion(key, *cur, curData) != version:
			return nil, fmt.Errorf("compare-and-set %s at version %s: %w", key, version, dcs.ErrVersionMismatch)
		}
		return &change{annotations: cod.encode(data), labels: c.labelChange()}, nil
	})
	if err != nil {
		if isSentinel(err) {
			return "", err
		}
		return "", storeErr(ctx, fmt.Sprintf("compare-and-set %s on %s", key, describe(c.kinds, c.namespace, name)), err)
	}
	stored, _ := cod.decode(written.annotations, true)
	return keyVersion(key, written, stored), nil
}

// CompareAndDelete deletes a cluster-wide key if its version is the given
// one (empty: unconditionally). A key owning its object deletes the object
// (Patroni empties /sync instead; it reads the same); a shared key removes
// its annotations.
func (b *Backend) CompareAndDelete(ctx context.Context, key dcs.Key, version string) error {
	c, err := b.connection()
	if err != nil {
		return err
	}
	cod := codecOf(key)
	if cod == nil {
		return fmt.Errorf("compare-and-delete: unknown key %q", key)
	}
	ctx, cancel := c.opContext(ctx)
	defer cancel()
	name := c.layout.objectOf(key)
	op := fmt.Sprintf("deleting %s from %s", key, describe(c.kinds, c.namespace, name))
	if ownsObject(key) {
		err := c.call(ctx, func(ctx context.Context) error { return c.kinds.delete(ctx, name, version) })
		switch {
		case err == nil:
			return nil
		case apierrors.IsNotFound(err) && version == "":
			return nil
		case apierrors.IsNotFound(err):
			return fmt.Errorf("%s at version %s: %w", op, version, dcs.ErrNotFound)
		case apierrors.IsConflict(err):
			return fmt.Errorf("%s at version %s: %w", op, version, dcs.ErrVersionMismatch)
		}
		return storeErr(ctx, op, err)
	}
	_, _, err = c.update(ctx, c.kinds, name, func(cur *object) (*change, error) {
		var ann map[string]string
		if cur != nil {
			ann = cur.annotations
		}
		curData, present := cod.decode(ann, cur != nil)
		switch {
		case !present && version == "":
			return nil, nil
		case !present:
			return nil, fmt.Errorf("%s at version %s: %w", op, version, dcs.ErrNotFound)
		case version != "" && contentVersion(curData) != version:
			return nil, fmt.Errorf("%s at version %s: %w", op, version, dcs.ErrVersionMismatch)
		}
		return &change{annotations: removal(cod)}, nil
	})
	if err != nil && !isSentinel(err) {
		return storeErr(ctx, op, err)
	}
	return err
}

// removal is the change that removes every annotation of a key.
func removal(cod codec) map[string]*string {
	out := cod.encode(nil)
	for k := range out {
		out[k] = nil
	}
	return out
}

// Set writes a cluster-wide key unconditionally, with one merge patch of
// its annotations (or a create of its object).
func (b *Backend) Set(ctx context.Context, key dcs.Key, data []byte) error {
	c, err := b.connection()
	if err != nil {
		return err
	}
	cod := codecOf(key)
	if cod == nil {
		return fmt.Errorf("set: unknown key %q", key)
	}
	if err := checkValue(string(key), data); err != nil {
		return err
	}
	ctx, cancel := c.opContext(ctx)
	defer cancel()
	name := c.layout.objectOf(key)
	if _, err := c.upsert(ctx, c.kinds, name, &change{annotations: cod.encode(data), labels: c.labelChange()}); err != nil {
		return storeErr(ctx, fmt.Sprintf("writing %s to %s", key, describe(c.kinds, c.namespace, name)), err)
	}
	return nil
}

// DeleteCluster deletes the cluster's objects by name: the leader, config,
// failover and sync objects and the member ConfigMaps. Member Pods are left
// alone, as Patroni leaves them; so is the Endpoints mode's config Service.
// Deleting by name rather than by label keeps other objects that happen to
// carry the cluster's labels.
func (b *Backend) DeleteCluster(ctx context.Context) error {
	c, err := b.connection()
	if err != nil {
		return err
	}
	ctx, cancel := c.opContext(ctx)
	defer cancel()
	type target struct {
		api  objectAPI
		name string
	}
	var targets []target
	for _, n := range []string{c.layout.leaderName(), c.layout.configName(), c.layout.failoverName(), c.layout.syncName()} {
		targets = append(targets, target{c.kinds, n})
	}
	if c.memberStore == MemberStoreConfigMap {
		var objs []object
		err := c.call(ctx, func(ctx context.Context) error {
			var err error
			objs, _, err = c.members.list(ctx, c.selector)
			return err
		})
		if err != nil {
			return storeErr(ctx, "listing the member ConfigMaps", err)
		}
		for _, o := range objs {
			if _, ok := c.layout.memberOf(o.name); ok {
				targets = append(targets, target{c.members, o.name})
			}
		}
	}
	var errs []error
	for _, t := range targets {
		err := c.call(ctx, func(ctx context.Context) error { return t.api.delete(ctx, t.name, "") })
		if err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, storeErr(ctx, "deleting "+describe(t.api, c.namespace, t.name), err))
		}
	}
	return errors.Join(errs...)
}

// isSentinel reports whether err carries one of the contract's sentinels.
func isSentinel(err error) bool {
	return errors.Is(err, dcs.ErrExists) || errors.Is(err, dcs.ErrNotFound) ||
		errors.Is(err, dcs.ErrVersionMismatch) || errors.Is(err, dcs.ErrUnavailable)
}
