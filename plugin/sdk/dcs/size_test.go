package dcs

import (
	"bytes"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/custos-ha/custos/plugin/sdk"
	dcsv1 "github.com/custos-ha/custos/plugin/sdk/proto/custos/dcs/v1"
)

func TestFitCluster(t *testing.T) {
	small := &Cluster{Config: &Value{Data: []byte(`{"ttl":30}`), Version: "1"}, Leader: &Leader{Name: "a"},
		Members: []Member{{Name: "a", Data: make([]byte, 1<<20)}}}
	fitCluster(small)
	if small.Omitted != nil || small.Config == nil || small.Leader == nil || len(small.Members) != 1 {
		t.Errorf("a cluster within the limits was changed: %+v", small.Omitted)
	}

	// One value over MaxValueSize is left out, the rest stays.
	one := &Cluster{Config: &Value{Data: make([]byte, MaxValueSize+1)}, Sync: &Value{Data: []byte("{}")},
		Members: []Member{{Name: "a", Data: []byte("{}")}}}
	fitCluster(one)
	if one.Config != nil || one.Sync == nil || len(one.Members) != 1 ||
		len(one.Omitted) != 1 || one.Omitted[0] != (OmittedValue{Path: "config", Size: MaxValueSize + 1}) {
		t.Errorf("a value over the limit: config %v, omitted %+v", one.Config != nil, one.Omitted)
	}

	// Many values under MaxValueSize that add up to more than a message:
	// the largest are left out until the answer fits.
	many := &Cluster{}
	for i := range 20 {
		many.Members = append(many.Members, Member{Name: string(rune('a' + i)), Data: bytes.Repeat([]byte{'x'}, MaxValueSize-i)})
	}
	fitCluster(many)
	if size := proto.Size(&dcsv1.GetClusterResponse{Cluster: clusterToProto(many)}); size > sdk.MaxMessageSize {
		t.Errorf("the answer is %d bytes, over %d", size, sdk.MaxMessageSize)
	}
	if len(many.Omitted) == 0 || len(many.Members)+len(many.Omitted) != 20 {
		t.Fatalf("%d members kept, %d omitted", len(many.Members), len(many.Omitted))
	}
	for _, o := range many.Omitted {
		for _, m := range many.Members {
			if len(m.Data) > o.Size {
				t.Errorf("kept member %s (%d bytes) larger than omitted %s (%d bytes)", m.Name, len(m.Data), o.Path, o.Size)
			}
		}
	}
}
