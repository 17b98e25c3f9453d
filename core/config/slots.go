package config

import "sort"

// Slot types of the dynamic configuration's "slots".
const (
	SlotPhysical SlotType = "physical"
	SlotLogical  SlotType = "logical"
)

// SlotType is a permanent slot's type: SlotPhysical or SlotLogical.
type SlotType string

func (t *SlotType) decodeTree(d *decoder, p path, v any) {
	switch s, _ := v.(string); SlotType(s) {
	case SlotPhysical, SlotLogical:
		*t = SlotType(s)
	default:
		d.add(p, "invalid value %v: want physical or logical", v)
	}
}

// Slot is an entry of the dynamic configuration's "slots": a permanent
// replication slot, named by its key. A logical slot names its database
// and output plugin. Keys custos does not know (Patroni 4.1's
// cluster_type) are kept.
type Slot struct {
	Type     SlotType `json:"type"`
	Database string   `json:"database"`
	Plugin   string   `json:"plugin"`

	raw map[string]any
}

// IgnoreSlot is an entry of "ignore_slots": slots it matches are left
// alone. An empty field matches anything.
type IgnoreSlot struct {
	Name     string `json:"name,omitempty"`
	Type     string `json:"type,omitempty"`
	Database string `json:"database,omitempty"`
	Plugin   string `json:"plugin,omitempty"`
}

// NamedSlot is a permanent slot with its name.
type NamedSlot struct {
	Name string
	Slot
}

// PermanentSlots are the slots of the dynamic configuration, sorted by
// name. An entry Validate refuses is left out: ParseDynamicOver never
// returns one, and a bootstrap configuration with one does not load.
func (dyn Dynamic) PermanentSlots() []NamedSlot {
	out := make([]NamedSlot, 0, len(dyn.Slots))
	for name, s := range dyn.Slots {
		switch {
		case s.Type == SlotPhysical:
		case s.Type == SlotLogical && s.Database != "" && s.Plugin != "":
		default:
			continue
		}
		out = append(out, NamedSlot{Name: name, Slot: s})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// hasLogicalSlot reports whether a permanent slot is logical.
func (dyn Dynamic) hasLogicalSlot() bool {
	for _, s := range dyn.PermanentSlots() {
		if s.Type == SlotLogical {
			return true
		}
	}
	return false
}
