package dcs

import (
	"fmt"
	"time"

	dcsv1 "github.com/custos-ha/custos/plugin/sdk/proto/custos/dcs/v1"
)

var keyToProto = map[Key]dcsv1.Key{
	KeyInitialize: dcsv1.Key_KEY_INITIALIZE,
	KeyConfig:     dcsv1.Key_KEY_CONFIG,
	KeyFailover:   dcsv1.Key_KEY_FAILOVER,
	KeySync:       dcsv1.Key_KEY_SYNC,
	KeyHistory:    dcsv1.Key_KEY_HISTORY,
	KeyStatus:     dcsv1.Key_KEY_STATUS,
	KeyFailsafe:   dcsv1.Key_KEY_FAILSAFE,
}

func keyFromProto(k dcsv1.Key) (Key, error) {
	for key, pk := range keyToProto {
		if pk == k {
			return key, nil
		}
	}
	return "", fmt.Errorf("unknown key %v", k)
}

func valueToProto(v *Value) *dcsv1.Value {
	if v == nil {
		return nil
	}
	return &dcsv1.Value{Data: v.Data, Version: v.Version}
}

func valueFromProto(v *dcsv1.Value) *Value {
	if v == nil {
		return nil
	}
	return &Value{Data: v.GetData(), Version: v.GetVersion()}
}

func clusterToProto(c *Cluster) *dcsv1.Cluster {
	if c == nil {
		return nil
	}
	pc := &dcsv1.Cluster{
		Initialize: valueToProto(c.Initialize),
		Config:     valueToProto(c.Config),
		Failover:   valueToProto(c.Failover),
		Sync:       valueToProto(c.Sync),
		History:    valueToProto(c.History),
		Status:     valueToProto(c.Status),
		Failsafe:   valueToProto(c.Failsafe),
	}
	if c.Leader != nil {
		pc.Leader = &dcsv1.Leader{Name: c.Leader.Name, Version: c.Leader.Version, Session: c.Leader.Session}
	}
	for _, m := range c.Members {
		pc.Members = append(pc.Members, &dcsv1.Member{Name: m.Name, Data: m.Data, Version: m.Version, Session: m.Session})
	}
	for _, o := range c.Omitted {
		pc.Omitted = append(pc.Omitted, &dcsv1.OmittedValue{Path: o.Path, Size: int64(o.Size)})
	}
	return pc
}

func clusterFromProto(pc *dcsv1.Cluster) *Cluster {
	c := &Cluster{
		Initialize: valueFromProto(pc.GetInitialize()),
		Config:     valueFromProto(pc.GetConfig()),
		Failover:   valueFromProto(pc.GetFailover()),
		Sync:       valueFromProto(pc.GetSync()),
		History:    valueFromProto(pc.GetHistory()),
		Status:     valueFromProto(pc.GetStatus()),
		Failsafe:   valueFromProto(pc.GetFailsafe()),
	}
	if l := pc.GetLeader(); l != nil {
		c.Leader = &Leader{Name: l.GetName(), Version: l.GetVersion(), Session: l.GetSession()}
	}
	for _, m := range pc.GetMembers() {
		c.Members = append(c.Members, Member{Name: m.GetName(), Data: m.GetData(), Version: m.GetVersion(), Session: m.GetSession()})
	}
	for _, o := range pc.GetOmitted() {
		c.Omitted = append(c.Omitted, OmittedValue{Path: o.GetPath(), Size: int(o.GetSize())})
	}
	return c
}

func eventToProto(e Event) *dcsv1.WatchEvent {
	t := dcsv1.WatchEvent_TYPE_UNSPECIFIED
	switch e.Type {
	case EventPut:
		t = dcsv1.WatchEvent_TYPE_PUT
	case EventDelete:
		t = dcsv1.WatchEvent_TYPE_DELETE
	}
	return &dcsv1.WatchEvent{Type: t, Path: e.Path, Version: e.Version}
}

func eventFromProto(pe *dcsv1.WatchEvent) Event {
	var t EventType
	switch pe.GetType() {
	case dcsv1.WatchEvent_TYPE_PUT:
		t = EventPut
	case dcsv1.WatchEvent_TYPE_DELETE:
		t = EventDelete
	}
	return Event{Type: t, Path: pe.GetPath(), Version: pe.GetVersion()}
}

func durationFromMillis(ms int64) time.Duration { return time.Duration(ms) * time.Millisecond }
