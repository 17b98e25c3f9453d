package config

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
)

// ParseDynamicOver reads the DCS "config" key as ParseDynamic does, but a
// key whose value is rejected keeps its value from inEffect (the dynamic
// configuration the agent runs with: the last good value it read, else the
// bootstrap one) instead of taking the default. patronictl 3.0.2 and
// etcdctl write /config without validating it, and a default is no safer
// than the value in effect: a loop_wait of 0 falling back to 10 is fine,
// but a failsafe_mode or synchronous_mode falling back to off is not.
//
// Granularity is the top-level key, and each key of "postgresql" on its
// own. ttl, loop_wait and retry_timeout are one setting: when any of them
// is rejected, or together they break loop_wait + 2*retry_timeout <= ttl,
// all three keep the values in effect, so the timing always works. A
// document that is not a JSON object keeps everything in effect.
//
// The problems name every rejected key and the value kept for it.
func ParseDynamicOver(data []byte, inEffect Dynamic) (Dynamic, Problems) {
	dyn, probs := ParseDynamic(data)
	if len(probs) == 0 {
		return dyn, nil
	}
	for _, p := range probs {
		if p.Path == "" {
			out := make(Problems, len(probs))
			for i, p := range probs {
				out[i] = p
				out[i].Message += "; keeping the whole configuration in effect"
			}
			return inEffect, out
		}
	}
	timing := false
	for _, p := range probs {
		switch topKey(p.Path) {
		case "ttl", "loop_wait", "retry_timeout":
			timing = true
		}
	}
	if timing {
		dyn.TTL, dyn.LoopWait, dyn.RetryTimeout = inEffect.TTL, inEffect.LoopWait, inEffect.RetryTimeout
		if dyn.timingProblems() {
			// Cannot happen with a value in effect that came from here or
			// from a validated bootstrap; defaults always work.
			def := DefaultDynamic()
			dyn.TTL, dyn.LoopWait, dyn.RetryTimeout = def.TTL, def.LoopWait, def.RetryTimeout
		}
	}
	out := make(Problems, 0, len(probs))
	dst, src := reflect.ValueOf(&dyn).Elem(), reflect.ValueOf(inEffect)
	for _, p := range probs {
		p.File, p.Line = "", 0
		switch top := topKey(p.Path); top {
		case "ttl", "loop_wait", "retry_timeout":
			p.Message += fmt.Sprintf("; ttl, loop_wait and retry_timeout keep the values in effect: %d, %d, %d", dyn.TTL, dyn.LoopWait, dyn.RetryTimeout)
		case "postgresql":
			d, s := dst.FieldByName("PostgreSQL"), src.FieldByName("PostgreSQL")
			if sub := topKey(strings.TrimPrefix(strings.TrimPrefix(p.Path, top), ".")); sub != "" {
				if f, ok := fieldsOf(d.Type()).byName[sub]; ok {
					d, s = d.Field(f.index), s.Field(f.index)
				}
			}
			d.Set(s)
			p.Message += "; keeping the value in effect: " + shortJSON(s.Interface())
		default:
			f, ok := fieldsOf(dst.Type()).byName[top]
			if !ok {
				// Unknown keys are kept, not checked: nothing to replace.
				p.Message += "; ignored"
				break
			}
			dst.Field(f.index).Set(src.Field(f.index))
			p.Message += "; keeping the value in effect: " + shortJSON(src.Field(f.index).Interface())
		}
		out = append(out, p)
	}
	return dyn, out
}

// timingProblems reports whether ttl, loop_wait and retry_timeout break
// their floors or the rule loop_wait + 2*retry_timeout <= ttl.
func (dyn Dynamic) timingProblems() bool {
	for _, p := range dyn.Validate() {
		switch p.Path {
		case "ttl", "loop_wait", "retry_timeout":
			return true
		}
	}
	return false
}

// topKey is the first key of a rendered path ("postgresql" of
// "postgresql.parameters.work_mem", "ignore_slots" of "ignore_slots[0]").
func topKey(p string) string {
	if i := strings.IndexAny(p, ".["); i >= 0 {
		return p[:i]
	}
	return p
}

// shortJSON renders a kept value for a problem, shortened when long.
func shortJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	const limit = 80
	if len(b) > limit {
		return string(b[:limit]) + "..."
	}
	return string(b)
}
