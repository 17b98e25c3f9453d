package dcs

import (
	"fmt"
	"sort"

	"google.golang.org/protobuf/proto"

	"github.com/custos-ha/custos/plugin/sdk"
	dcsv1 "github.com/custos-ha/custos/plugin/sdk/proto/custos/dcs/v1"
)

// messageHeadroom is what a GetCluster answer keeps free under
// sdk.MaxMessageSize for the list of omitted values and gRPC's framing.
const messageHeadroom = 64 << 10

// slotOverhead bounds what a value costs in an answer beyond its data: its
// key or member name, version, session and protobuf framing.
const slotOverhead = 4 << 10

// fitCluster makes c carriable in one gRPC message: it leaves out every
// value larger than MaxValueSize, then, while the answer is still over
// sdk.MaxMessageSize, the largest value left, and lists what it left out in
// c.Omitted. c is the backend's answer and is changed in place.
func fitCluster(c *Cluster) {
	if c == nil {
		return
	}
	type slot struct {
		path string
		size int
		drop func()
	}
	var slots []slot
	for _, k := range Keys {
		if v := c.Get(k); v != nil {
			slots = append(slots, slot{string(k), len(v.Data), func() { c.Put(k, nil) }})
		}
	}
	if c.Leader != nil {
		slots = append(slots, slot{LeaderPath, len(c.Leader.Name), func() { c.Leader = nil }})
	}
	for _, m := range c.Members {
		name := m.Name
		slots = append(slots, slot{MembersPath + name, len(m.Data), func() {
			for i := range c.Members {
				if c.Members[i].Name == name {
					c.Members = append(c.Members[:i], c.Members[i+1:]...)
					return
				}
			}
		}})
	}
	sort.SliceStable(slots, func(i, j int) bool { return slots[i].size > slots[j].size })
	omit := func(s slot) {
		s.drop()
		c.Omitted = append(c.Omitted, OmittedValue{Path: s.path, Size: s.size})
	}
	i := 0
	for ; i < len(slots) && slots[i].size > MaxValueSize; i++ {
		omit(slots[i])
	}
	// Values, names, versions and sessions: when the data alone, with room
	// for the rest, is well under the limit, the answer is too, and the
	// exact size need not be computed.
	bound := 0
	for _, s := range slots[i:] {
		bound += s.size + slotOverhead
	}
	if bound <= sdk.MaxMessageSize-messageHeadroom {
		return
	}
	for ; i < len(slots) && proto.Size(&dcsv1.GetClusterResponse{Cluster: clusterToProto(c)}) > sdk.MaxMessageSize-messageHeadroom; i++ {
		omit(slots[i])
	}
}

// checkValueSize refuses a value the SDK would not carry back in a read.
func checkValueSize(path string, data []byte) error {
	if len(data) > MaxValueSize {
		return fmt.Errorf("writing %s: the value is %d bytes, over the %d-byte limit of a DCS value", path, len(data), MaxValueSize)
	}
	return nil
}
