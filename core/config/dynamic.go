package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
)

// Defaults and limits of the dynamic configuration. They are Patroni's, so
// that a cluster behaves the same whichever agent wrote its /config.
const (
	// DefaultTTL is the leader key lifetime: long enough to ride out a
	// couple of slow DCS round trips, short enough for a failover within a
	// minute.
	DefaultTTL Seconds = 30
	// MinTTL, MinLoopWait and MinRetryTimeout are the smallest values that
	// work. Patroni 3.0.2 runs with any whole number of seconds (the floors
	// of 20, 1 and 3 in Patroni's documentation are not enforced by it), so
	// custos takes whatever 3.0.2 can run with and refuses only values that
	// cannot work: zero or negative. A lease lives at least a second (DCS
	// plugins raise a TTL below their store's own minimum); the timing rule
	// below keeps a working combination.
	MinTTL Seconds = 1
	// DefaultLoopWait is the HA cycle period.
	DefaultLoopWait Seconds = 10
	// MinLoopWait keeps the loop from spinning on the DCS (Patroni 3.0.2
	// spins with 0, warning "Loop time exceeded" each cycle).
	MinLoopWait Seconds = 1
	// DefaultRetryTimeout bounds DCS and PostgreSQL retries; with loop_wait
	// it must fit twice in ttl (loop_wait + 2*retry_timeout <= ttl).
	DefaultRetryTimeout Seconds = 10
	// MinRetryTimeout: a zero deadline would fail every DCS call at once.
	MinRetryTimeout Seconds = 1
	// DefaultMaximumLagOnFailover is 1 MiB of WAL: a replica further behind
	// is not promoted, to bound the data lost by a failover.
	DefaultMaximumLagOnFailover Size = 1048576
	// DefaultMaximumLagOnSyncnode -1 disables swapping out a lagging
	// synchronous standby.
	DefaultMaximumLagOnSyncnode Size = -1
	// DefaultPrimaryStartTimeout gives a crashed primary five minutes to
	// recover in place before a failover.
	DefaultPrimaryStartTimeout Seconds = 300
	// DefaultSynchronousNodeCount is one synchronous standby.
	DefaultSynchronousNodeCount = 1
	// DefaultMemberSlotsTTL keeps a departed member's slot 30 minutes so a
	// quick restart does not need a fresh base backup.
	DefaultMemberSlotsTTL Seconds = 1800
	// DefaultUseSlots is on: replicas stream through physical slots so the
	// primary keeps the WAL they still need.
	DefaultUseSlots = true
)

// Dynamic is the cluster-wide dynamic configuration: the JSON value of the
// DCS "config" key, seeded from [bootstrap.dcs]. Field names are Patroni's
// JSON keys; durations are integer seconds, as in Patroni.
//
// Unknown keys are kept: marshalling writes back every key that was read,
// plus the known keys whose value differs from its default.
type Dynamic struct {
	TTL                  Seconds           `json:"ttl"`
	LoopWait             Seconds           `json:"loop_wait"`
	RetryTimeout         Seconds           `json:"retry_timeout"`
	PrimaryRaceBackoff   Seconds           `json:"primary_race_backoff"`
	MaximumLagOnFailover Size              `json:"maximum_lag_on_failover"`
	MaximumLagOnSyncnode Size              `json:"maximum_lag_on_syncnode"`
	MaxTimelinesHistory  int               `json:"max_timelines_history"`
	PrimaryStartTimeout  Seconds           `json:"primary_start_timeout" config:"alias=master_start_timeout"`
	PrimaryStopTimeout   Seconds           `json:"primary_stop_timeout" config:"alias=master_stop_timeout"`
	SynchronousMode      SyncMode          `json:"synchronous_mode"`
	SynchronousStrict    bool              `json:"synchronous_mode_strict"`
	SynchronousNodeCount int               `json:"synchronous_node_count"`
	FailsafeMode         bool              `json:"failsafe_mode"`
	CheckTimeline        bool              `json:"check_timeline"`
	Pause                bool              `json:"pause"`
	MemberSlotsTTL       Seconds           `json:"member_slots_ttl"`
	Slots                map[string]Slot   `json:"slots"`
	IgnoreSlots          []IgnoreSlot      `json:"ignore_slots"`
	StandbyCluster       *StandbyCluster   `json:"standby_cluster"`
	PostgreSQL           DynamicPostgreSQL `json:"postgresql"`

	raw map[string]any
}

// DynamicPostgreSQL is the "postgresql" object of the dynamic configuration.
type DynamicPostgreSQL struct {
	UsePgRewind             bool             `json:"use_pg_rewind"`
	UseSlots                bool             `json:"use_slots"`
	Parameters              map[string]Param `json:"parameters"`
	ParametersPrimary       map[string]Param `json:"parameters_primary"`
	ParametersReplica       map[string]Param `json:"parameters_replica"`
	ParametersStandbyLeader map[string]Param `json:"parameters_standby_leader"`
	PgHBA                   []string         `json:"pg_hba"`
	PgHBAPrimary            []string         `json:"pg_hba_primary"`
	PgHBAReplica            []string         `json:"pg_hba_replica"`
	PgHBAStandbyLeader      []string         `json:"pg_hba_standby_leader"`
	PgIdent                 []string         `json:"pg_ident"`
	PgIdentPrimary          []string         `json:"pg_ident_primary"`
	PgIdentReplica          []string         `json:"pg_ident_replica"`
	PgIdentStandbyLeader    []string         `json:"pg_ident_standby_leader"`
	RecoveryConf            map[string]Param `json:"recovery_conf"`

	raw map[string]any
}

// StandbyCluster makes the cluster a standby of another one.
type StandbyCluster struct {
	Host                  string   `json:"host"`
	Port                  int      `json:"port"`
	PrimarySlotName       string   `json:"primary_slot_name"`
	CreateReplicaMethods  []string `json:"create_replica_methods"`
	RestoreCommand        string   `json:"restore_command"`
	ArchiveCleanupCommand string   `json:"archive_cleanup_command"`
	RecoveryMinApplyDelay Param    `json:"recovery_min_apply_delay"`

	raw map[string]any
}

// DefaultDynamic returns the dynamic configuration Patroni assumes when a
// key is absent.
func DefaultDynamic() Dynamic {
	return Dynamic{
		TTL:                  DefaultTTL,
		LoopWait:             DefaultLoopWait,
		RetryTimeout:         DefaultRetryTimeout,
		MaximumLagOnFailover: DefaultMaximumLagOnFailover,
		MaximumLagOnSyncnode: DefaultMaximumLagOnSyncnode,
		PrimaryStartTimeout:  DefaultPrimaryStartTimeout,
		SynchronousMode:      SyncOff,
		SynchronousNodeCount: DefaultSynchronousNodeCount,
		MemberSlotsTTL:       DefaultMemberSlotsTTL,
		PostgreSQL:           DynamicPostgreSQL{UseSlots: DefaultUseSlots},
	}
}

// ParseDynamic reads the JSON of the DCS "config" key (compact as Patroni
// writes it, or spaced as patronictl 3.0.2 writes it) over the defaults,
// and validates it. Problems name the JSON key paths; the returned value
// holds the defaults wherever a key was absent or wrong.
func ParseDynamic(data []byte) (Dynamic, Problems) {
	dyn, probs := decodeDynamic(data)
	if len(probs) == 0 || probs[0].Path != "" {
		// A value that did not decode is not checked again against its
		// limits: one problem per key.
		decodeProbs := probs
		for _, p := range dyn.Validate() {
			if !decodeProbs.at(p.Path) {
				probs = append(probs, p)
			}
		}
	}
	probs.sort()
	return dyn, probs
}

// decodeDynamic reads the JSON over the defaults, reporting syntax and type
// problems only.
func decodeDynamic(data []byte) (Dynamic, Problems) {
	dyn := DefaultDynamic()
	v, err := DecodeJSON(data)
	switch {
	case errors.Is(err, errTrailingData):
		return dyn, Problems{{Message: "dynamic configuration has trailing data after the JSON object"}}
	case err != nil:
		return dyn, Problems{{Message: fmt.Sprintf("dynamic configuration is not valid JSON: %v", err)}}
	}
	m, ok := v.(map[string]any)
	if !ok {
		return dyn, Problems{{Message: fmt.Sprintf("dynamic configuration must be a JSON object, got %s", typeName(v))}}
	}
	d := &decoder{}
	d.decode(nil, m, reflect.ValueOf(&dyn).Elem())
	return dyn, d.probs
}

var errTrailingData = errors.New("trailing data after the JSON value")

// DecodeJSON decodes one JSON value into the tree form configuration
// values take everywhere: map[string]any, []any, string, bool, nil, and
// numbers as int64 when integral, else float64. Data after the value is an
// error.
func DecodeJSON(data []byte) (any, error) {
	v, err := DecodeJSONNumbers(data)
	if err != nil {
		return nil, err
	}
	return fromJSON(v), nil
}

// DecodeJSONNumbers is DecodeJSON with numbers kept as json.Number, for a
// value written back as it was sent.
func DecodeJSONNumbers(data []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errTrailingData
	}
	return v, nil
}

// fromJSON turns json.Number values into int64 or float64, the tree's
// numeric types.
func fromJSON(v any) any {
	switch x := v.(type) {
	case json.Number:
		if n, err := x.Int64(); err == nil {
			return n
		}
		f, _ := x.Float64()
		return f
	case map[string]any:
		for k, e := range x {
			x[k] = fromJSON(e)
		}
	case []any:
		for i, e := range x {
			x[i] = fromJSON(e)
		}
	}
	return v
}

// Validate checks values against their minimums and the timing rule
// loop_wait + 2*retry_timeout <= ttl. Patroni 3.0.2 does not enforce the
// rule (3.2 and later silently lower loop_wait, then retry_timeout); custos
// refuses a combination that breaks it: a leader that sleeps loop_wait and
// then retries its renewal for retry_timeout, twice, would lose its key in
// between. Paths are the JSON key paths.
func (dyn Dynamic) Validate() Problems {
	var ps Problems
	add := func(key, format string, args ...any) {
		ps = append(ps, Problem{Path: key, Message: fmt.Sprintf(format, args...)})
	}
	atLeast := func(key string, v, minimum int64) bool {
		if v < minimum {
			add(key, "out of range: %d is below the minimum %d", v, minimum)
			return false
		}
		return true
	}
	okTTL := atLeast("ttl", int64(dyn.TTL), int64(MinTTL))
	okLoop := atLeast("loop_wait", int64(dyn.LoopWait), int64(MinLoopWait))
	okRetry := atLeast("retry_timeout", int64(dyn.RetryTimeout), int64(MinRetryTimeout))
	if okTTL && okLoop && okRetry && dyn.LoopWait+2*dyn.RetryTimeout > dyn.TTL {
		add("ttl", "conflicting values: loop_wait + 2*retry_timeout must not exceed ttl, but %d + 2*%d = %d > %d (raise ttl or lower loop_wait/retry_timeout)",
			dyn.LoopWait, dyn.RetryTimeout, dyn.LoopWait+2*dyn.RetryTimeout, dyn.TTL)
	}
	atLeast("primary_race_backoff", int64(dyn.PrimaryRaceBackoff), 0)
	atLeast("maximum_lag_on_failover", int64(dyn.MaximumLagOnFailover), 0)
	atLeast("maximum_lag_on_syncnode", int64(dyn.MaximumLagOnSyncnode), -1)
	atLeast("max_timelines_history", int64(dyn.MaxTimelinesHistory), 0)
	atLeast("primary_start_timeout", int64(dyn.PrimaryStartTimeout), 0)
	atLeast("primary_stop_timeout", int64(dyn.PrimaryStopTimeout), 0)
	atLeast("synchronous_node_count", int64(dyn.SynchronousNodeCount), 1)
	atLeast("member_slots_ttl", int64(dyn.MemberSlotsTTL), 0)

	for _, name := range sortedKeys(dyn.Slots) {
		key := "slots." + quoteKey(name)
		switch slot := dyn.Slots[name]; slot.Type {
		case "":
			add(key+".type", "missing required value: want physical or logical")
		case SlotLogical:
			if slot.Database == "" {
				add(key+".database", "missing required value (a logical slot needs database and plugin)")
			}
			if slot.Plugin == "" {
				add(key+".plugin", "missing required value (a logical slot needs database and plugin)")
			}
		}
	}
	if sc := dyn.StandbyCluster; sc != nil {
		if sc.Port < 0 || sc.Port > 65535 {
			add("standby_cluster.port", "out of range: %d is not a TCP port", sc.Port)
		}
		if sc.Host == "" && sc.RestoreCommand == "" {
			add("standby_cluster", "missing required value: set host or restore_command")
		}
	}
	ps.sort()
	return ps
}

func (dyn *Dynamic) keepRaw(raw map[string]any)          { dyn.raw = raw }
func (pg *DynamicPostgreSQL) keepRaw(raw map[string]any) { pg.raw = raw }
func (sc *StandbyCluster) keepRaw(raw map[string]any)    { sc.raw = raw }
func (s *Slot) keepRaw(raw map[string]any)               { s.raw = raw }

// MarshalJSON writes Patroni's JSON: every key that was read (unknown ones
// as they were), plus known keys that differ from their defaults.
func (dyn Dynamic) MarshalJSON() ([]byte, error) {
	return marshalKept(dyn, dyn.raw, DefaultDynamic())
}

// UnmarshalJSON reads the JSON over the defaults. It fails on syntax and
// type errors only; ParseDynamic also checks Patroni's limits.
func (dyn *Dynamic) UnmarshalJSON(b []byte) error {
	parsed, probs := decodeDynamic(b)
	if len(probs) > 0 {
		return fmt.Errorf("decoding dynamic configuration: %w", probs)
	}
	*dyn = parsed
	return nil
}

// MarshalJSON writes the "postgresql" object, keeping unknown keys.
func (pg DynamicPostgreSQL) MarshalJSON() ([]byte, error) {
	return marshalKept(pg, pg.raw, DynamicPostgreSQL{UseSlots: DefaultUseSlots})
}

// MarshalJSON writes the "standby_cluster" object, keeping unknown keys.
func (sc StandbyCluster) MarshalJSON() ([]byte, error) {
	return marshalKept(sc, sc.raw, StandbyCluster{})
}

// MarshalJSON writes a "slots" entry, keeping unknown keys.
func (s Slot) MarshalJSON() ([]byte, error) {
	return marshalKept(s, s.raw, Slot{})
}

// marshalKept marshals struct v: each field is written if its key (or its
// alias) was in raw or its value differs from the same field in def; keys
// of raw that no field takes are written back unchanged.
func marshalKept(v any, raw map[string]any, def any) ([]byte, error) {
	rv, dv := reflect.ValueOf(v), reflect.ValueOf(def)
	info := fieldsOf(rv.Type())
	out := make(map[string]any, len(info.fields)+len(raw))
	for _, f := range info.fields {
		key := f.name
		_, present := raw[key]
		if alias := aliasOf(rv.Type(), f.index); !present && alias != "" {
			if _, ok := raw[alias]; ok {
				key, present = alias, true
			}
		}
		fv := rv.Field(f.index)
		if !present && reflect.DeepEqual(fv.Interface(), dv.Field(f.index).Interface()) {
			continue
		}
		if fv.Kind() == reflect.Pointer && fv.IsNil() {
			if present {
				out[key] = raw[key]
			}
			continue
		}
		out[key] = fv.Interface()
	}
	for k, val := range raw {
		if _, known := info.byName[k]; !known {
			out[k] = val
		}
	}
	return json.Marshal(out)
}
