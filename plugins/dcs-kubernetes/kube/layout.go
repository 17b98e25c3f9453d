package kube

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strings"

	"github.com/custos-ha/custos/plugin/sdk/dcs"
)

// Annotation names of Patroni's Kubernetes layout.
const (
	// On the leader object.
	annLeader      = "leader"
	annAcquireTime = "acquireTime"
	annRenewTime   = "renewTime"
	annTTL         = "ttl"
	annTransitions = "transitions"
	annOptime      = "optime"
	annSlots       = "slots"
	annRetainSlots = "retain_slots"
	annFailsafe    = "failsafe"
	// On the config object.
	annConfig     = "config"
	annInitialize = "initialize"
	annHistory    = "history"
	// On the failover and sync objects.
	annMember      = "member"
	annScheduledAt = "scheduled_at"
	annSyncStandby = "sync_standby"
	annQuorum      = "quorum"
	// On a member's Pod or ConfigMap: the member data.
	annStatus = "status"
	// annMemberRenewTime is on member records written by custos: the time of
	// the last TouchMember, so that every touch changes the record and
	// readers can tell a live member from one that stopped.
	annMemberRenewTime = annRenewTime
)

// rawAnnotationPrefix names the annotation that holds a structured key's
// value verbatim when it has no field-wise form in Patroni's layout (not a
// JSON object of the known fields); Patroni ignores it.
const rawAnnotationPrefix = "custos-ha.github.io/"

// Object name suffixes.
const (
	suffixLeader   = "-leader"
	suffixConfig   = "-config"
	suffixFailover = "-failover"
	suffixSync     = "-sync"
	// suffixMember prefixes the member name in a member ConfigMap's name.
	suffixMember = "-member-"
)

// layout names the objects of one cluster, as Patroni does: <scope>-leader
// (or <scope> with Endpoints), <scope>-config, <scope>-failover,
// <scope>-sync; member ConfigMaps (outside Pods) are <scope>-member-<name>.
type layout struct {
	scope     string
	endpoints bool
}

func (l layout) leaderName() string {
	if l.endpoints {
		return l.scope
	}
	return l.scope + suffixLeader
}

func (l layout) configName() string   { return l.scope + suffixConfig }
func (l layout) failoverName() string { return l.scope + suffixFailover }
func (l layout) syncName() string     { return l.scope + suffixSync }

func (l layout) memberObjectName(member string) string { return l.scope + suffixMember + member }

// memberOf returns the member whose ConfigMap has the name.
func (l layout) memberOf(objectName string) (string, bool) {
	name, ok := strings.CutPrefix(objectName, l.scope+suffixMember)
	return name, ok && name != ""
}

// objectOf returns the name of the object holding a key.
func (l layout) objectOf(k dcs.Key) string {
	switch k {
	case dcs.KeyInitialize, dcs.KeyConfig, dcs.KeyHistory:
		return l.configName()
	case dcs.KeyStatus, dcs.KeyFailsafe:
		return l.leaderName()
	case dcs.KeyFailover:
		return l.failoverName()
	case dcs.KeySync:
		return l.syncName()
	}
	return ""
}

// ownsObject reports whether a key has its object to itself: the key is
// present exactly when the object exists, and its version is the object's
// resourceVersion. The other keys share an object (config, initialize and
// history; the leader, status and failsafe) and are versioned by content.
func ownsObject(k dcs.Key) bool { return k == dcs.KeyFailover || k == dcs.KeySync }

// codec maps a key's value onto annotations of its object and back.
type codec interface {
	// encode returns the annotation changes that store data: every
	// annotation the key uses, nil for those to remove.
	encode(data []byte) map[string]*string
	// decode reads the value from the annotations of its object (exists
	// tells whether the object exists at all); ok is false when absent.
	decode(annotations map[string]string, exists bool) (data []byte, ok bool)
}

func codecOf(k dcs.Key) codec {
	switch k {
	case dcs.KeyInitialize:
		return rawCodec{annInitialize}
	case dcs.KeyConfig:
		return rawCodec{annConfig}
	case dcs.KeyHistory:
		return rawCodec{annHistory}
	case dcs.KeyFailsafe:
		return rawCodec{annFailsafe}
	case dcs.KeyStatus:
		return statusCodec
	case dcs.KeyFailover:
		return failoverCodec
	case dcs.KeySync:
		return syncCodec
	}
	return nil
}

// rawCodec stores the value as one annotation, byte for byte.
type rawCodec struct{ annotation string }

func (c rawCodec) encode(data []byte) map[string]*string {
	s := string(data)
	return map[string]*string{c.annotation: &s}
}

func (c rawCodec) decode(ann map[string]string, _ bool) ([]byte, bool) {
	v, ok := ann[c.annotation]
	if !ok {
		return nil, false
	}
	return []byte(v), true
}

// fieldKind is how a JSON field is written as an annotation.
type fieldKind int

const (
	// fieldString: a JSON string, stored unquoted.
	fieldString fieldKind = iota
	// fieldInt: a JSON integer, stored as its digits.
	fieldInt
	// fieldJSON: any JSON value, stored as compact JSON text.
	fieldJSON
)

type field struct {
	name string
	kind fieldKind
}

// fieldCodec stores a JSON object field by field, one annotation per field,
// as Patroni does for /status (optime, slots, retain_slots on the leader
// object), /failover and /sync. A null field is a removed annotation. A
// value with no such form (not a JSON object, an unknown field, a wrong
// type) is stored verbatim in the raw annotation instead, so every value
// round-trips. Reading renders the fields in the order listed, compactly:
// the form core writes.
type fieldCodec struct {
	fields []field
	raw    string
	// own: the key owns its object, so an object without fields reads as
	// {}; otherwise (status) it reads as absent.
	own bool
}

var (
	statusCodec = fieldCodec{
		fields: []field{{annOptime, fieldInt}, {annSlots, fieldJSON}, {annRetainSlots, fieldJSON}},
		raw:    rawAnnotationPrefix + string(dcs.KeyStatus),
	}
	failoverCodec = fieldCodec{
		fields: []field{{annLeader, fieldString}, {annMember, fieldString}, {annScheduledAt, fieldString}},
		raw:    rawAnnotationPrefix + string(dcs.KeyFailover),
		own:    true,
	}
	syncCodec = fieldCodec{
		fields: []field{{annLeader, fieldString}, {annQuorum, fieldInt}, {annSyncStandby, fieldString}},
		raw:    rawAnnotationPrefix + string(dcs.KeySync),
		own:    true,
	}
)

func (c fieldCodec) encode(data []byte) map[string]*string {
	out := make(map[string]*string, len(c.fields)+1)
	for _, f := range c.fields {
		out[f.name] = nil
	}
	values, ok := c.split(data)
	if !ok || (!c.own && len(values) == 0) {
		for _, f := range c.fields {
			out[f.name] = nil
		}
		s := string(data)
		out[c.raw] = &s
		return out
	}
	for name, v := range values {
		out[name] = &v
	}
	out[c.raw] = nil
	return out
}

// split returns the annotation value of each non-null field, or false when
// the value has no field-wise form.
func (c fieldCodec) split(data []byte) (map[string]string, bool) {
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return nil, false
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(trimmed, &obj); err != nil {
		return nil, false
	}
	out := make(map[string]string, len(obj))
	for name, raw := range obj {
		f, known := c.field(name)
		if !known {
			return nil, false
		}
		if string(raw) == "null" {
			continue
		}
		switch f.kind {
		case fieldString:
			var s string
			if err := json.Unmarshal(raw, &s); err != nil {
				return nil, false
			}
			out[name] = s
		case fieldInt:
			if !isJSONInteger(raw) {
				return nil, false
			}
			out[name] = string(raw)
		case fieldJSON:
			var buf bytes.Buffer
			if err := json.Compact(&buf, raw); err != nil {
				return nil, false
			}
			out[name] = buf.String()
		}
	}
	return out, true
}

func (c fieldCodec) field(name string) (field, bool) {
	for _, f := range c.fields {
		if f.name == name {
			return f, true
		}
	}
	return field{}, false
}

func (c fieldCodec) decode(ann map[string]string, exists bool) ([]byte, bool) {
	var buf bytes.Buffer
	n := 0
	for _, f := range c.fields {
		v, ok := ann[f.name]
		if !ok {
			continue
		}
		var rendered []byte
		switch f.kind {
		case fieldString:
			rendered = marshalString(v)
		case fieldInt:
			if !isJSONInteger([]byte(v)) {
				continue // written by someone else; Patroni reads it as absent too
			}
			rendered = []byte(v)
		case fieldJSON:
			if !json.Valid([]byte(v)) {
				continue
			}
			var compact bytes.Buffer
			_ = json.Compact(&compact, []byte(v))
			rendered = compact.Bytes()
		}
		if n == 0 {
			buf.WriteByte('{')
		} else {
			buf.WriteByte(',')
		}
		buf.Write(marshalString(f.name))
		buf.WriteByte(':')
		buf.Write(rendered)
		n++
	}
	if n > 0 {
		buf.WriteByte('}')
		return buf.Bytes(), true
	}
	if v, ok := ann[c.raw]; ok {
		return []byte(v), true
	}
	if c.own && exists {
		return []byte("{}"), true
	}
	return nil, false
}

// marshalString renders a JSON string without escaping HTML characters.
func marshalString(s string) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s)
	return bytes.TrimRight(buf.Bytes(), "\n")
}

// isJSONInteger reports whether b is a JSON number without fraction or
// exponent.
func isJSONInteger(b []byte) bool {
	if len(b) > 0 && b[0] == '-' {
		b = b[1:]
	}
	if len(b) == 0 || (b[0] == '0' && len(b) > 1) {
		return false
	}
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// contentVersion is the version of a key sharing its object with other
// keys: a digest of the value, so that a write to a neighbour (history next
// to config) does not fail a compare-and-set on it. A rewrite with the same
// bytes keeps the version, which for a compare-and-set means "the value I
// read is still there".
func contentVersion(data []byte) string {
	sum := sha256.Sum256(data)
	return "c" + hex.EncodeToString(sum[:8])
}

// leaderRecordAnnotations make up the leader record whose changes readers
// watch to judge the leader's liveness.
var leaderRecordAnnotations = []string{annLeader, annAcquireTime, annRenewTime, annTTL, annTransitions}

// leaderRecord renders the leader record of the annotations for comparison;
// "" when none of its annotations is there.
func leaderRecord(ann map[string]string) string {
	var b strings.Builder
	for _, k := range leaderRecordAnnotations {
		if v, ok := ann[k]; ok {
			b.WriteString(k)
			b.WriteByte('=')
			b.WriteString(v)
			b.WriteByte('\n')
		}
	}
	return b.String()
}

// memberRecord renders a member record for comparison.
func memberRecord(ann map[string]string) string {
	return ann[annStatus] + "\n" + ann[annMemberRenewTime]
}
