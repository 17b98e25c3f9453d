package zookeeper

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"sync"

	"github.com/go-zookeeper/zk"

	"github.com/custos-ha/custos/plugin/sdk/dcs"
)

// GetCluster implements dcs.Backend.
//
// ZooKeeper 3.6+ can read several znodes in one multi, but the pinned
// client (github.com/go-zookeeper/zk v1.0.4) cannot send such a request, so
// the read is made consistent the optimistic way: after a sync (the server
// catches up with the leader), the children of the prefix and of members/
// are listed, every znode is read in one pipelined burst, and the two
// child lists' cversions are checked again. If a znode was created or
// deleted in between, the read starts over. Two values changed by other
// clients during the burst may still come from slightly different moments;
// each one is exact at its version.
func (b *Backend) GetCluster(ctx context.Context) (*dcs.Cluster, error) {
	ctx, cancel := b.begin(ctx)
	defer cancel()
	prefix, _ := b.paths()
	var out *dcs.Cluster
	err := b.read(ctx, func(s *session) error {
		c, err := readCluster(ctx, s, prefix)
		out = c
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("reading cluster %s: %w", prefix, mapErr(err))
	}
	return out, nil
}

// listing is the children of a znode with its cversion; cversion -1 means
// the znode is absent.
type listing struct {
	children []string
	cversion int32
}

func listChildren(ctx context.Context, s *session, path string) (listing, error) {
	return do(ctx, s, func(c *zk.Conn) (listing, error) {
		children, st, err := c.Children(path)
		if errors.Is(err, zk.ErrNoNode) {
			return listing{cversion: -1}, nil
		}
		if err != nil {
			return listing{}, err
		}
		return listing{children, st.Cversion}, nil
	})
}

func childVersion(ctx context.Context, s *session, path string) (int32, error) {
	return do(ctx, s, func(c *zk.Conn) (int32, error) {
		ok, st, err := c.Exists(path)
		if err != nil {
			return 0, err
		}
		if !ok {
			return -1, nil
		}
		return st.Cversion, nil
	})
}

// parallel runs the functions concurrently and returns their errors joined.
func parallel(fns ...func() error) error {
	errs := make([]error, len(fns))
	var wg sync.WaitGroup
	for i, fn := range fns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = fn()
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func readCluster(ctx context.Context, s *session, prefix string) (*dcs.Cluster, error) {
	membersDir := prefix + "/" + dcs.MembersPath[:len(dcs.MembersPath)-1]
	if _, err := do(ctx, s, func(c *zk.Conn) (string, error) { return c.Sync(prefix) }); err != nil {
		return nil, fmt.Errorf("syncing %s: %w", prefix, err)
	}
	for {
		var top, members listing
		err := parallel(
			func() (err error) { top, err = listChildren(ctx, s, prefix); return err },
			func() (err error) { members, err = listChildren(ctx, s, membersDir); return err },
		)
		if err != nil {
			return nil, err
		}
		paths := make([]string, 0, len(top.children)+len(members.children))
		for _, name := range top.children {
			if name != "members" {
				paths = append(paths, prefix+"/"+name)
			}
		}
		for _, name := range members.children {
			paths = append(paths, membersDir+"/"+name)
		}
		nodes := make([]*node, len(paths))
		fns := make([]func() error, 0, len(paths)+2)
		for i, p := range paths {
			fns = append(fns, func() error {
				n, err := getNode(ctx, s, p)
				if errors.Is(err, zk.ErrNoNode) {
					return nil // deleted meanwhile: the cversion check sees it
				}
				if err == nil {
					if n.data == nil {
						n.data = []byte{}
					}
					nodes[i] = &n
				}
				return err
			})
		}
		var topAfter, membersAfter int32
		if err := parallel(fns...); err != nil {
			return nil, err
		}
		err = parallel(
			func() (err error) { topAfter, err = childVersion(ctx, s, prefix); return err },
			func() (err error) { membersAfter, err = childVersion(ctx, s, membersDir); return err },
		)
		if err != nil {
			return nil, err
		}
		if topAfter == top.cversion && membersAfter == members.cversion {
			return buildCluster(top.children, members.children, nodes), nil
		}
		if err := ctx.Err(); err != nil {
			return nil, ctxErr(ctx)
		}
	}
}

// buildCluster assembles the read; nodes follow the order of the listed
// children (members/ excluded from the top level).
func buildCluster(top, members []string, nodes []*node) *dcs.Cluster {
	c := &dcs.Cluster{}
	i := 0
	for _, name := range top {
		if name == "members" {
			continue
		}
		n := nodes[i]
		i++
		if n == nil {
			continue
		}
		version := strconv.Itoa(int(n.stat.Version))
		if name == dcs.LeaderPath {
			c.Leader = &dcs.Leader{Name: string(n.data), Version: version, Session: ownerHex(n.stat.EphemeralOwner)}
			continue
		}
		for _, k := range dcs.Keys {
			if string(k) == name {
				c.Put(k, &dcs.Value{Data: n.data, Version: version})
			}
		}
	}
	for _, name := range members {
		n := nodes[i]
		i++
		if n == nil {
			continue
		}
		c.Members = append(c.Members, dcs.Member{
			Name:    name,
			Data:    n.data,
			Version: strconv.Itoa(int(n.stat.Version)),
			Session: ownerHex(n.stat.EphemeralOwner),
		})
	}
	sort.Slice(c.Members, func(i, j int) bool { return c.Members[i].Name < c.Members[j].Name })
	return c
}

// ownerHex renders a znode's ephemeralOwner; "" for a persistent znode.
func ownerHex(owner int64) string {
	if owner == 0 {
		return ""
	}
	return sessionHex(owner)
}
