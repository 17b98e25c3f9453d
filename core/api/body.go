package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/custos-ha/custos/core/cluster"
	"github.com/custos-ha/custos/core/config"
)

// maxBodyBytes caps a request body. The largest body is a whole dynamic
// configuration (PUT /config): a few kilobytes even with long pg_hba lists.
const maxBodyBytes = 1 << 20

// readBody reads the JSON object of a request body as Patroni's
// _read_json_content does: without a Content-Length a required body is a
// 411; a body that is not a JSON object, or an empty object when the body
// is required, is a 400. An optional body may be absent ({} is returned).
// Numbers are kept as json.Number, so a configuration is written back as
// it was sent. It answers and returns ok=false on failure.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request, optional bool) (map[string]any, bool) {
	if r.ContentLength < 0 && !optional {
		s.writeText(w, http.StatusLengthRequired, "Length Required: a JSON body with a Content-Length is expected")
		return nil, false
	}
	if r.ContentLength == 0 && optional {
		return map[string]any{}, true
	}
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	if err != nil {
		s.writeText(w, http.StatusBadRequest, "reading the request body: "+err.Error())
		return nil, false
	}
	if len(bytes.TrimSpace(raw)) == 0 && optional {
		return map[string]any{}, true
	}
	v, err := config.DecodeJSONNumbers(raw)
	if err != nil {
		s.writeText(w, http.StatusBadRequest, "the request body is not JSON: "+err.Error())
		return nil, false
	}
	obj, isObject := v.(map[string]any)
	switch {
	case !isObject:
		s.writeText(w, http.StatusBadRequest, "the request body is not a JSON object")
		return nil, false
	case len(obj) == 0 && !optional:
		s.writeText(w, http.StatusBadRequest, "the request body is an empty JSON object")
		return nil, false
	}
	return obj, true
}

// stringField is body[key] as a string: "" when absent or null, an error
// for another type.
func stringField(body map[string]any, key string) (string, error) {
	switch v := body[key].(type) {
	case nil:
		return "", nil
	case string:
		return v, nil
	default:
		return "", fmt.Errorf("%s must be a string, not %s", key, jsonType(v))
	}
}

func jsonType(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case json.Number, float64:
		return "a number"
	case string:
		return "a string"
	case []any:
		return "an array"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("%T", v)
}

// parseBool is Patroni's parse_bool over the value's text: on/true/yes/1
// and off/false/no/0 in any case; ok=false for anything else.
func parseBool(v any) (value, ok bool) {
	var s string
	switch t := v.(type) {
	case bool:
		return t, true
	case string:
		s = t
	case json.Number:
		s = t.String()
	default:
		return false, false
	}
	switch strings.ToLower(s) {
	case "on", "true", "yes", "1":
		return true, true
	case "off", "false", "no", "0":
		return false, true
	}
	return false, false
}

// Schedule parse answers (Patroni's parse_schedule texts).
const msgUnparsableSchedule = "Unable to parse scheduled timestamp. It should be in an unambiguous format, e.g. ISO 8601"

// Layouts of a scheduled time. withZone are tried first; a time that only
// parses with a layout of withoutZone lacks its time zone.
var (
	scheduleWithZone = []string{
		time.RFC3339Nano,
		"2006-01-02 15:04:05.999999999Z07:00",
		"2006-01-02T15:04:05.999999999Z0700",
		"2006-01-02 15:04:05.999999999Z0700",
		"2006-01-02T15:04Z07:00",
		"2006-01-02 15:04Z07:00",
	}
	scheduleWithoutZone = []string{
		"2006-01-02T15:04:05.999999999",
		"2006-01-02 15:04:05.999999999",
		"2006-01-02T15:04",
		"2006-01-02 15:04",
		"2006-01-02",
	}
)

// parseSchedule is Patroni's parse_schedule for action ("restart",
// "switchover"): the time, or the status and message to answer with: 400
// without a time zone, 422 when unparsable or in the past.
func parseSchedule(v any, action string, now time.Time) (time.Time, int, string) {
	s, isString := v.(string)
	if !isString {
		return time.Time{}, http.StatusUnprocessableEntity, msgUnparsableSchedule
	}
	s = strings.TrimSpace(s)
	if t, err := cluster.ParseTime(s); err == nil {
		return checkFuture(t, action, now)
	}
	for _, layout := range scheduleWithZone {
		if t, err := time.Parse(layout, s); err == nil {
			return checkFuture(t, action, now)
		}
	}
	for _, layout := range scheduleWithoutZone {
		if _, err := time.Parse(layout, s); err == nil {
			return time.Time{}, http.StatusBadRequest, "Timezone information is mandatory for the scheduled " + action
		}
	}
	return time.Time{}, http.StatusUnprocessableEntity, msgUnparsableSchedule
}

func checkFuture(t time.Time, action string, now time.Time) (time.Time, int, string) {
	if t.Before(now) {
		return time.Time{}, http.StatusUnprocessableEntity, "Cannot schedule " + action + " in the past"
	}
	return t, 0, ""
}

// numberUnit splits "30s", " 1.5 min", "2e1": the number and what follows.
var numberUnit = regexp.MustCompile(`^\s*([+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)\s*(\S*)\s*$`)

// secondsPerUnit are the time units Patroni's parse_int accepts, in seconds.
var secondsPerUnit = map[string]float64{
	"": 1, "us": 1e-6, "ms": 1e-3, "s": 1, "min": 60, "h": 3600, "d": 86400,
}

// parseSeconds is Patroni's parse_int(value, 's'): a number of seconds,
// or a string with an optional unit (us, ms, s, min, h, d), rounded to
// whole seconds (half to even). ok=false when it is neither.
func parseSeconds(v any) (int64, bool) {
	var text string
	switch t := v.(type) {
	case json.Number:
		text = t.String()
	case float64:
		text = strconv.FormatFloat(t, 'g', -1, 64)
	case string:
		text = t
	default:
		return 0, false
	}
	m := numberUnit.FindStringSubmatch(text)
	if m == nil {
		return 0, false
	}
	f, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		return 0, false
	}
	per, known := secondsPerUnit[m[2]]
	if !known {
		return 0, false
	}
	secs := math.RoundToEven(f * per)
	if math.IsInf(secs, 0) || math.IsNaN(secs) || math.Abs(secs) > math.MaxInt32 {
		return 0, false
	}
	return int64(secs), true
}

// postgresVersionNum is Patroni's postgres_version_to_int: "15.2" ->
// 150002, "9.6.3" -> 90603. Versions 10 and later need X.Y, older ones
// X.Y.Z. The problem, when not "", is Patroni's text.
func postgresVersionNum(v any) (int, string) {
	s, isString := v.(string)
	if !isString {
		return 0, fmt.Sprintf("Invalid PostgreSQL version: %v", v)
	}
	parts := strings.Split(s, ".")
	nums := make([]int, 0, len(parts))
	for _, p := range parts {
		n, err := strconv.Atoi(strings.TrimSpace(p))
		if err != nil || n < 0 {
			return 0, "Invalid PostgreSQL version: " + s
		}
		nums = append(nums, n)
	}
	if len(nums) < 2 || len(nums) > 3 || (len(nums) == 2 && nums[0] < 10) {
		return 0, "Invalid PostgreSQL version format: X.Y or X.Y.Z is accepted: " + s
	}
	if len(nums) == 2 {
		// 10.1 is 100001: the minor takes the last two digits.
		nums = []int{nums[0], 0, nums[1]}
	}
	if nums[1] > 99 || nums[2] > 99 {
		return 0, "Invalid PostgreSQL version: " + s
	}
	return nums[0]*10000 + nums[1]*100 + nums[2], ""
}
