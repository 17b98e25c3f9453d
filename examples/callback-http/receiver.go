package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/custos-ha/custos/plugin/sdk/callback"
	"github.com/custos-ha/custos/plugin/sdk/section"
)

// config is the [callback.http] section.
type config struct {
	// url receives the POSTs.
	url *url.URL
	// timeout bounds each POST; 0 leaves only the agent's deadline for the
	// delivery, which always applies.
	timeout time.Duration
	// header is sent with each POST; a Host entry sets the request's host.
	header http.Header
}

// clientHeaders are set by the HTTP client itself: a value given for one
// would not be sent as given, so the section refuses them.
var clientHeaders = map[string]bool{
	"Connection":        true,
	"Content-Length":    true,
	"Keep-Alive":        true,
	"Proxy-Connection":  true,
	"Te":                true,
	"Trailer":           true,
	"Transfer-Encoding": true,
	"Upgrade":           true,
}

// parseConfig reads the section, naming every problem by its key path.
func parseConfig(data []byte) (config, error) {
	c := config{header: http.Header{}}
	d, err := section.New(data)
	if err != nil {
		return c, err
	}
	if d.Has("url") {
		var raw string
		d.String("url", &raw)
		if !d.Failed("url") {
			u, err := parseURL(raw)
			if err != nil {
				d.Add("url", "%v", err)
			}
			c.url = u
		}
	} else {
		d.Add("url", "is required")
	}
	d.Duration("request_timeout", &c.timeout)
	if v, ok := d.Value("headers"); ok {
		if hd, ok := d.Table("headers", v); ok {
			parseHeaders(hd, v.(map[string]any), c.header)
			hd.Done()
		}
	}
	return c, d.Err()
}

// parseURL accepts an absolute http or https URL with a host. Messages
// show the URL without its password.
func parseURL(raw string) (*url.URL, error) {
	shown := section.RedactURL(raw)
	u, err := url.Parse(strings.TrimSpace(raw))
	switch {
	case err != nil:
		return nil, fmt.Errorf("%q is not a URL", shown)
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, fmt.Errorf("%q must be an http or https URL", shown)
	case u.Host == "":
		return nil, fmt.Errorf("%q has no host", shown)
	case u.Fragment != "":
		return nil, fmt.Errorf("%q has a fragment, which is never sent", shown)
	}
	return u, nil
}

// parseHeaders reads the headers table into h. Values are never quoted in
// messages: they may be credentials.
func parseHeaders(d *section.Decoder, table map[string]any, h http.Header) {
	names := make([]string, 0, len(table))
	for name := range table {
		names = append(names, name)
	}
	sort.Strings(names)
	seen := map[string]string{}
	for _, name := range names {
		var value string
		d.String(name, &value)
		if d.Failed(d.Path(name)) {
			continue
		}
		canonical := http.CanonicalHeaderKey(name)
		switch {
		case !validHeaderName(name):
			d.Add(d.Path(name), "is not a valid header name")
		case clientHeaders[canonical]:
			d.Add(d.Path(name), "is set by the HTTP client and cannot be given")
		case seen[canonical] != "":
			d.Add(d.Path(name), "repeats header %s (names are case-insensitive)", seen[canonical])
		case !validHeaderValue(value):
			d.Add(d.Path(name), "holds a control character")
		case canonical == "Host" && strings.TrimSpace(value) == "":
			d.Add(d.Path(name), "must not be empty")
		default:
			seen[canonical] = name
			h.Set(canonical, value)
		}
	}
}

// validHeaderName reports whether name is an HTTP token.
func validHeaderName(name string) bool {
	if name == "" {
		return false
	}
	for _, r := range name {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		case strings.ContainsRune("!#$%&'*+-.^_`|~", r):
		default:
			return false
		}
	}
	return true
}

// validHeaderValue refuses control characters other than tab, which would
// end the header or the request.
func validHeaderValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if b := v[i]; (b < ' ' && b != '\t') || b == 0x7f {
			return false
		}
	}
	return true
}

// body is what each POST carries.
type body struct {
	Action string `json:"action"`
	Role   string `json:"role"`
	Scope  string `json:"scope"`
	Member string `json:"member"`
	Seq    uint64 `json:"seq"`
	// Time is RFC 3339 with nanoseconds, in UTC.
	Time string `json:"time"`
}

// answerExcerpt bounds how much of a failed answer's body goes into the
// error: enough for a server's one-line reason.
const answerExcerpt = 256

// Receiver posts events. It remembers the highest Seq it posted, so that
// a redelivered event is not posted twice within its life.
type Receiver struct {
	logger hclog.Logger
	client *http.Client

	mu      sync.Mutex
	handled uint64
}

var _ callback.Receiver = (*Receiver)(nil)

// NewReceiver returns a receiver that has posted nothing.
func NewReceiver(logger hclog.Logger) *Receiver {
	transport := http.DefaultTransport.(*http.Transport).Clone()
	// Events are rare: a connection per POST leaves nothing open between
	// them.
	transport.DisableKeepAlives = true
	return &Receiver{
		logger: logger,
		client: &http.Client{
			Transport: transport,
			// A redirect of a POST may turn into a GET without the body:
			// the event would look delivered and not be.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}
}

// Validate implements callback.Receiver.
func (r *Receiver) Validate(_ context.Context, data []byte) error {
	_, err := parseConfig(data)
	return err
}

// Deliver implements callback.Receiver: it POSTs the event and returns nil
// once the endpoint answered 2xx.
func (r *Receiver) Deliver(ctx context.Context, data []byte, ev callback.Event) error {
	c, err := parseConfig(data)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("event %d not posted: %w", ev.Seq, err)
	}
	r.mu.Lock()
	handled := r.handled
	r.mu.Unlock()
	if ev.Seq <= handled {
		r.logger.Info("skipping an event posted already", "seq", ev.Seq, "action", ev.Action)
		return nil
	}
	if err := r.post(ctx, c, ev); err != nil {
		return err
	}
	r.mu.Lock()
	r.handled = max(r.handled, ev.Seq)
	r.mu.Unlock()
	return nil
}

func (r *Receiver) post(ctx context.Context, c config, ev callback.Event) error {
	shown := c.url.Redacted()
	payload, err := json.Marshal(body{
		Action: ev.Action,
		Role:   ev.Role,
		Scope:  ev.Scope,
		Member: ev.Member,
		Seq:    ev.Seq,
		Time:   ev.Time.UTC().Format(time.RFC3339Nano),
	})
	if err != nil {
		return fmt.Errorf("encoding event %d: %w", ev.Seq, err)
	}
	reqCtx := ctx
	if c.timeout > 0 {
		var cancel context.CancelFunc
		reqCtx, cancel = context.WithTimeout(ctx, c.timeout)
		defer cancel()
	}
	req, err := http.NewRequestWithContext(reqCtx, http.MethodPost, c.url.String(), bytes.NewReader(payload))
	if err != nil {
		return fmt.Errorf("posting event %d to %s: %w", ev.Seq, shown, err)
	}
	req.Header = c.header.Clone()
	if host := req.Header.Get("Host"); host != "" {
		req.Host = host
		req.Header.Del("Host")
	}
	if req.Header.Get("Content-Type") == "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if req.Header.Get("User-Agent") == "" {
		req.Header.Set("User-Agent", binaryName+"/"+version)
	}

	resp, err := r.client.Do(req)
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return fmt.Errorf("posting event %d to %s: %w", ev.Seq, shown, ctxErr)
		}
		if reqCtx.Err() != nil {
			// The section's request_timeout, not the agent's deadline: not a
			// context error for the agent.
			return fmt.Errorf("posting event %d to %s: no answer within the request_timeout of %s", ev.Seq, shown, c.timeout)
		}
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err
		}
		return fmt.Errorf("posting event %d to %s: %v", ev.Seq, shown, err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		excerpt, _ := io.ReadAll(io.LimitReader(resp.Body, answerExcerpt))
		msg := fmt.Sprintf("posting event %d to %s: %s", ev.Seq, shown, resp.Status)
		if line := firstLine(excerpt); line != "" {
			msg += ": " + line
		}
		if loc := resp.Header.Get("Location"); resp.StatusCode/100 == 3 && loc != "" {
			msg += " (redirects are not followed; to " + section.RedactURL(loc) + ")"
		}
		return errors.New(msg)
	}
	r.logger.Debug("posted event", "seq", ev.Seq, "action", ev.Action, "role", ev.Role, "url", shown, "status", resp.StatusCode)
	return nil
}

// firstLine returns the first non-blank line of b, trimmed and printable.
func firstLine(b []byte) string {
	for _, line := range strings.Split(string(b), "\n") {
		if line = strings.TrimSpace(line); line != "" {
			return strings.Map(func(r rune) rune {
				if r < ' ' || r == 0x7f {
					return -1
				}
				return r
			}, line)
		}
	}
	return ""
}
