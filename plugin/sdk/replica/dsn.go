package replica

import (
	"fmt"
	"net/url"
	"strings"
)

// Check reports an unusable source: no way to connect, or a password in
// the connection string (it would show in the process list; passwords
// travel in PassFile). The error wraps ErrInvalidRequest.
func (s Source) Check() error {
	dsn := s.DSN()
	if strings.TrimSpace(dsn) == "" {
		return fmt.Errorf("source %q has no connection string and no host: %w", s.Member, ErrInvalidRequest)
	}
	has, err := connStringHasPassword(dsn)
	if err != nil {
		return fmt.Errorf("source %q: parsing connection string: %v: %w", s.Member, err, ErrInvalidRequest)
	}
	if has {
		return fmt.Errorf("source %q: the connection string carries a password; pass it in a pgpass file: %w", s.Member, ErrInvalidRequest)
	}
	return nil
}

// connStringHasPassword parses a libpq connection string, in URI or in
// keyword/value form, and reports whether it sets a password.
func connStringHasPassword(dsn string) (bool, error) {
	if rest, ok := cutURIScheme(dsn); ok {
		authority, query := rest, ""
		if i := strings.IndexAny(rest, "/?"); i >= 0 {
			authority = rest[:i]
			if q := strings.IndexByte(rest, '?'); q >= 0 {
				query = rest[q+1:]
			}
		}
		if at := strings.LastIndexByte(authority, '@'); at >= 0 && strings.Contains(authority[:at], ":") {
			return true, nil
		}
		values, err := url.ParseQuery(query)
		if err != nil {
			return false, err
		}
		return values.Has("password"), nil
	}
	kv, err := parseKeywordValues(dsn)
	if err != nil {
		return false, err
	}
	_, has := kv["password"]
	return has, nil
}

func cutURIScheme(dsn string) (string, bool) {
	for _, scheme := range []string{"postgresql://", "postgres://"} {
		if rest, ok := strings.CutPrefix(dsn, scheme); ok {
			return rest, true
		}
	}
	return "", false
}

// parseKeywordValues parses libpq's "key=value key='quoted value'" form.
func parseKeywordValues(s string) (map[string]string, error) {
	out := map[string]string{}
	i := 0
	skipSpace := func() {
		for i < len(s) && strings.IndexByte(" \t\n\r\f\v", s[i]) >= 0 {
			i++
		}
	}
	for {
		skipSpace()
		if i >= len(s) {
			return out, nil
		}
		start := i
		for i < len(s) && s[i] != '=' && strings.IndexByte(" \t\n\r\f\v", s[i]) < 0 {
			i++
		}
		key := s[start:i]
		skipSpace()
		if i >= len(s) || s[i] != '=' {
			return nil, fmt.Errorf("missing \"=\" after %q", key)
		}
		i++
		skipSpace()
		var val strings.Builder
		if i < len(s) && s[i] == '\'' {
			i++
			closed := false
			for i < len(s) {
				c := s[i]
				i++
				if c == '\\' && i < len(s) {
					val.WriteByte(s[i])
					i++
					continue
				}
				if c == '\'' {
					closed = true
					break
				}
				val.WriteByte(c)
			}
			if !closed {
				return nil, fmt.Errorf("unterminated quoted value of %q", key)
			}
		} else {
			for i < len(s) && strings.IndexByte(" \t\n\r\f\v", s[i]) < 0 {
				if s[i] == '\\' && i+1 < len(s) {
					i++
				}
				val.WriteByte(s[i])
				i++
			}
		}
		out[key] = val.String()
	}
}
