package api

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"reflect"
	"slices"

	"github.com/custos-ha/custos/core/config"
)

// patchConfig is PATCH /config: the body is deep-merged into /config (a
// null deletes a key), the result validated and written over the version
// read. It answers 200 with the new configuration, 400 naming each key the
// change made wrong, 409 when /config changed meanwhile, 503 when /config
// is absent or not a JSON object.
func (s *Server) patchConfig(w http.ResponseWriter, r *http.Request) {
	patch, ok := s.readBody(w, r, false)
	if !ok {
		return
	}
	ctx := r.Context()
	c, err := s.readCluster(ctx)
	if err != nil {
		s.writeText(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	var current map[string]any
	if c.Config != nil {
		if v, err := config.DecodeJSONNumbers(c.Config.Data); err == nil {
			current, _ = v.(map[string]any)
		}
	}
	if current == nil {
		s.writeText(w, http.StatusServiceUnavailable, "no valid /config in the DCS to patch")
		return
	}
	if mergeConfig(current, patch) {
		data, err := marshalConfig(current)
		if err != nil {
			s.writeText(w, http.StatusBadRequest, "encoding the configuration: "+err.Error())
			return
		}
		if problems := newProblems(c.Config.Data, data); len(problems) > 0 {
			s.writeText(w, http.StatusBadRequest, problems.Error())
			return
		}
		if !s.writeConfig(ctx, w, data, c.Config.Version, http.StatusServiceUnavailable) {
			return
		}
		// Keys only: a value may hold a password (primary_conninfo).
		s.logger.Info("dynamic configuration patched", "keys", sortedKeys(patch))
	}
	s.op.Wake()
	s.writeJSON(w, http.StatusOK, current)
}

// putConfig is PUT /config: the body replaces /config unconditionally. It
// answers 200 with the body, 400 naming each wrong key, 502 when the write
// fails.
func (s *Server) putConfig(w http.ResponseWriter, r *http.Request) {
	body, ok := s.readBody(w, r, false)
	if !ok {
		return
	}
	data, err := marshalConfig(body)
	if err != nil {
		s.writeText(w, http.StatusBadRequest, "encoding the configuration: "+err.Error())
		return
	}
	if _, problems := config.ParseDynamic(data); len(problems) > 0 {
		s.writeText(w, http.StatusBadRequest, problems.Error())
		return
	}
	ctx := r.Context()
	unchanged := false
	if c, err := s.readCluster(ctx); err == nil && c.Config != nil {
		if v, err := config.DecodeJSONNumbers(c.Config.Data); err == nil {
			unchanged = reflect.DeepEqual(v, any(body))
		}
	}
	if !unchanged {
		if !s.writeConfig(ctx, w, data, "", http.StatusBadGateway) {
			return
		}
		s.logger.Info("dynamic configuration replaced")
	}
	s.op.Wake()
	s.writeJSON(w, http.StatusOK, body)
}

// writeConfig writes /config over version and answers the failure: 409 on
// a compare-and-set conflict, failStatus otherwise.
func (s *Server) writeConfig(ctx context.Context, w http.ResponseWriter, data []byte, version string, failStatus int) bool {
	ctx, cancel := context.WithTimeout(ctx, dcsCallTimeout)
	defer cancel()
	err := s.op.WriteConfig(ctx, data, version)
	switch {
	case err == nil:
		return true
	case version != "" && isConflict(err):
		s.writeText(w, http.StatusConflict, "Conflict: /config changed since it was read; read it again and retry")
	default:
		s.logger.Error("writing /config", "error", err)
		s.writeText(w, failStatus, "writing /config: "+err.Error())
	}
	return false
}

// newProblems validates the patched configuration and returns the problems
// it has that the stored one did not have: a patch is refused for what it
// breaks, not for what was wrong already (a cluster configured by an older
// Patroni must still be paused).
func newProblems(before, after []byte) config.Problems {
	_, old := config.ParseDynamic(before)
	seen := map[config.Problem]bool{}
	for _, p := range old {
		seen[p] = true
	}
	_, now := config.ParseDynamic(after)
	var out config.Problems
	for _, p := range now {
		if !seen[p] {
			out = append(out, p)
		}
	}
	return out
}

// mergeConfig is Patroni's patch_config: patch is merged into cfg, objects
// recursively; a null removes the key; a scalar whose text is unchanged
// ("30" over 30) is left alone. A new object is added without its nulls.
// It reports whether cfg changed.
func mergeConfig(cfg, patch map[string]any) bool {
	changed := false
	for k, v := range patch {
		old, present := cfg[k]
		switch pv := v.(type) {
		case nil:
			if present {
				delete(cfg, k)
				changed = changed || old != nil
			}
		case map[string]any:
			if om, isMap := old.(map[string]any); isMap {
				if mergeConfig(om, pv) {
					changed = true
				}
				continue
			}
			cfg[k] = withoutNulls(pv)
			changed = true
		default:
			if present && sameValue(old, v) {
				continue
			}
			cfg[k] = v
			changed = true
		}
	}
	return changed
}

// withoutNulls drops the null members of an object, recursively.
func withoutNulls(m map[string]any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		switch t := v.(type) {
		case nil:
		case map[string]any:
			out[k] = withoutNulls(t)
		default:
			out[k] = v
		}
	}
	return out
}

// sameValue compares as Patroni's str(old) != str(new): a number and a
// string with the same text are the same value; lists compare as a whole.
func sameValue(a, b any) bool {
	as, aok := scalarText(a)
	bs, bok := scalarText(b)
	if aok && bok {
		return as == bs
	}
	return reflect.DeepEqual(a, b)
}

// scalarText is a scalar's text as Python's str() renders it.
func scalarText(v any) (string, bool) {
	switch t := v.(type) {
	case string:
		return t, true
	case json.Number:
		return t.String(), true
	case bool:
		if t {
			return "True", true
		}
		return "False", true
	}
	return "", false
}

// marshalConfig encodes a configuration compactly as Patroni writes it,
// without escaping <, > and & (restore_command may hold them).
func marshalConfig(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
