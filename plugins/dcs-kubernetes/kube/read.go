package kube

import (
	"context"
	"time"

	"github.com/custos-ha/custos/plugin/sdk/dcs"
)

// GetCluster lists the cluster's objects (and its member Pods or
// ConfigMaps) from the API server, each list one consistent read, and
// judges the leader and member records' liveness on the local clock.
func (b *Backend) GetCluster(ctx context.Context) (*dcs.Cluster, error) {
	c, err := b.connection()
	if err != nil {
		return nil, err
	}
	ctx, cancel := c.opContext(ctx)
	defer cancel()
	s, err := c.read(ctx)
	if err != nil {
		return nil, err
	}
	cl, _ := c.viewer.view(s, c.ttlNow(), time.Now())
	return cl, nil
}

// read lists the objects of the cluster.
func (c *connection) read(ctx context.Context) (snapshot, error) {
	var kinds []object
	err := c.call(ctx, func(ctx context.Context) error {
		var err error
		kinds, _, err = c.kinds.list(ctx, c.selector)
		return err
	})
	if err != nil {
		return snapshot{}, storeErr(ctx, "listing the cluster's "+c.kinds.kind()+"s", err)
	}
	s := c.snapshot(kinds, nil)
	if !c.membersInKinds() {
		var members []object
		err := c.call(ctx, func(ctx context.Context) error {
			var err error
			members, _, err = c.members.list(ctx, c.selector)
			return err
		})
		if err != nil {
			return snapshot{}, storeErr(ctx, "listing the cluster's member "+c.members.kind()+"s", err)
		}
		s = c.snapshot(kinds, members)
	}
	return s, nil
}

// snapshot sorts listed objects into a snapshot: in ConfigMaps mode with
// member ConfigMaps, the members are among the kinds.
func (c *connection) snapshot(kinds, members []object) snapshot {
	s := snapshot{objects: make(map[string]object, len(kinds)), members: map[string]object{}}
	for _, o := range kinds {
		s.objects[o.name] = o
	}
	if c.membersInKinds() {
		members = kinds
	}
	for _, o := range members {
		if c.memberStore == MemberStorePod {
			s.members[o.name] = o
		} else if name, ok := c.layout.memberOf(o.name); ok {
			s.members[name] = o
		}
	}
	return s
}
