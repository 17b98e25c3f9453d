package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/custos-ha/custos/core/api"
)

const (
	// StatusTimeout bounds one GET /patroni. Patroni waits 2 s for each peer
	// in the leader race: a peer slower than that is treated as
	// unreachable rather than delaying the election.
	StatusTimeout = 2 * time.Second
	// dialTimeout bounds the TCP connect within a request's deadline.
	dialTimeout = 2 * time.Second
	// maxBody caps a response body; status documents are a few kB.
	maxBody = 4 << 20
	// errorBodyExcerpt is how much of an unexpected answer an error quotes.
	errorBodyExcerpt = 200
)

// Options are the [ctl] settings: how this node authenticates to its peers'
// REST APIs and checks their certificates. Patroni falls back to the
// [restapi] authentication when [ctl] has none; the caller applies that.
type Options struct {
	// Username and Password are sent as basic auth when Username is set,
	// on the unsafe methods only (POST, PUT, PATCH, DELETE): GET endpoints
	// are open on every member (as with Patroni), and a member's api_url
	// comes from the DCS, which anyone able to write it could point at a
	// host that collects the credentials.
	Username string
	Password string
	// CACert verifies the servers' certificates; empty means the system
	// pool.
	CACert string
	// CertFile and KeyFile are this client's certificate, for servers with
	// verify_client; KeyFilePassword decrypts a key with legacy PEM
	// encryption (ctl.keyfile_password, see api.LoadKeyPair).
	CertFile        string
	KeyFile         string
	KeyFilePassword string
	// Insecure skips verifying the servers' certificates.
	Insecure bool
}

// Client talks to REST APIs. It is safe for concurrent use.
type Client struct {
	http *http.Client
	auth string
}

// New returns a client with the options' TLS material loaded.
func New(opts Options) (*Client, error) {
	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: opts.Insecure}
	if opts.CACert != "" {
		pem, err := os.ReadFile(opts.CACert)
		if err != nil {
			return nil, fmt.Errorf("reading ctl.cacert: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ctl.cacert %s: no PEM certificate found", opts.CACert)
		}
		tlsCfg.RootCAs = pool
	}
	if opts.CertFile != "" {
		cert, err := api.LoadKeyPair("ctl", opts.CertFile, opts.KeyFile, opts.KeyFilePassword)
		if err != nil {
			return nil, fmt.Errorf("loading the client certificate: %w", err)
		}
		tlsCfg.Certificates = []tls.Certificate{cert}
	}
	transport := &http.Transport{
		Proxy:               nil, // peers are reached directly, never through HTTP_PROXY
		DialContext:         (&net.Dialer{Timeout: dialTimeout}).DialContext,
		TLSClientConfig:     tlsCfg,
		TLSHandshakeTimeout: StatusTimeout,
		// No ResponseHeaderTimeout: each call is bounded by its context
		// (GetStatus by StatusTimeout), and a switchover or a restart
		// answers only once it is done.
		MaxIdleConnsPerHost: 2,
		IdleConnTimeout:     time.Minute,
	}
	c := &Client{http: &http.Client{Transport: transport}}
	if opts.Username != "" {
		c.auth = "Basic " + basicCredentials(opts.Username, opts.Password)
	}
	return c, nil
}

// Close releases idle connections.
func (c *Client) Close() { c.http.CloseIdleConnections() }

// HTTPError is a response with an unexpected status code.
type HTTPError struct {
	URL        string
	StatusCode int
	// Body is the start of the response body.
	Body string
}

// Error names the URL, the status and the start of the answer.
func (e *HTTPError) Error() string {
	msg := fmt.Sprintf("%s answered %d %s", e.URL, e.StatusCode, http.StatusText(e.StatusCode))
	if e.Body != "" {
		msg += ": " + e.Body
	}
	return msg
}

// StatusURL is the URL of a member's status document: its api_url as
// published (Patroni publishes ".../patroni"), or with "/patroni" appended
// when the URL has no path.
func StatusURL(apiURL string) (string, error) {
	u, err := url.Parse(apiURL)
	if err != nil {
		return "", fmt.Errorf("api_url %q: %w", apiURL, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return "", fmt.Errorf("api_url %q is not an http(s) URL", apiURL)
	}
	if u.Path == "" || u.Path == "/" {
		u.Path = "/patroni"
	}
	return u.String(), nil
}

// GetStatus fetches a member's status document (GET /patroni) within
// StatusTimeout (or ctx's earlier deadline).
func (c *Client) GetStatus(ctx context.Context, apiURL string) (api.Status, error) {
	var st api.Status
	target, err := StatusURL(apiURL)
	if err != nil {
		return st, fmt.Errorf("getting status: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, StatusTimeout)
	defer cancel()
	body, err := c.get(ctx, target, http.StatusOK)
	if err != nil {
		return st, fmt.Errorf("getting status from %s: %w", target, err)
	}
	if err := json.Unmarshal(body, &st); err != nil {
		return api.Status{}, fmt.Errorf("getting status from %s: decoding the answer: %w", target, err)
	}
	return st, nil
}

// get performs a GET, without credentials, and returns the body when the
// status is want.
func (c *Client) get(ctx context.Context, target string, want int) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		// *url.Error repeats the method and URL the caller already names.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return nil, fmt.Errorf("reading the answer: %w", err)
	}
	if resp.StatusCode != want {
		return nil, &HTTPError{URL: target, StatusCode: resp.StatusCode, Body: excerpt(body)}
	}
	return body, nil
}

func excerpt(body []byte) string {
	s := strings.TrimSpace(string(bytes.ToValidUTF8(body, nil)))
	if len(s) > errorBodyExcerpt {
		s = s[:errorBodyExcerpt] + "..."
	}
	return s
}

func basicCredentials(username, password string) string {
	return base64.StdEncoding.EncodeToString([]byte(username + ":" + password))
}
