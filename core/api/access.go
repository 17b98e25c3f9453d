package api

import (
	"context"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"
)

// resolveTimeout bounds resolving the host names of the allowlist and of
// the members' api_url.
const resolveTimeout = 5 * time.Second

// Access check answers (Patroni's texts).
const (
	msgAccessDenied      = "Access is denied"
	msgClientCertMissing = "client certificate required"
	msgNoAuthHeader      = "no auth header received"
	msgNotAuthenticated  = "not authenticated"
	// authRealm is the realm Patroni announces; clients match on it.
	authRealm = `Basic realm="Patroni"`
)

func basicAuthHeader(username, password string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(username+":"+password))
}

// prepared is what the REST API loads from its files and resolves before
// it serves: the TLS configuration (nil without certfile) and the
// allowlist.
type prepared struct {
	tls       *tls.Config
	allowlist []*net.IPNet
}

// prepare loads the TLS material and resolves the allowlist of cfg. Every
// error is a *KeyError naming the [restapi] key to fix.
func prepare(ctx context.Context, cfg ServerConfig) (*prepared, error) {
	nets, err := resolveAllowlist(ctx, cfg.Allowlist)
	if err != nil {
		return nil, err
	}
	p := &prepared{allowlist: nets}
	if cfg.CertFile == "" {
		return p, nil
	}
	pair := &keyPair{section: "restapi", certFile: cfg.CertFile, keyFile: cfg.KeyFile, password: cfg.KeyFilePassword}
	if _, err := pair.get(); err != nil {
		return nil, err
	}
	tc := &tls.Config{
		MinVersion:     tls.VersionTLS12,
		NextProtos:     []string{"http/1.1"},
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return pair.get() },
	}
	switch cfg.VerifyClient {
	case "", VerifyClientNone:
		tc.ClientAuth = tls.NoClientCert
	case VerifyClientOptional:
		tc.ClientAuth = tls.VerifyClientCertIfGiven
	case VerifyClientRequired:
		tc.ClientAuth = tls.RequireAndVerifyClientCert
	default:
		return nil, keyErrorf("restapi.verify_client", "%q is not none, optional or required", cfg.VerifyClient)
	}
	if cfg.CAFile != "" {
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, &KeyError{Key: "restapi.cafile", Err: err}
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, keyErrorf("restapi.cafile", "%s holds no PEM certificate", cfg.CAFile)
		}
		tc.ClientCAs = pool
	} else if tc.ClientAuth != tls.NoClientCert {
		return nil, keyErrorf("restapi.verify_client", "%s needs restapi.cafile to verify client certificates", cfg.VerifyClient)
	}
	p.tls = tc
	return p, nil
}

// prepare loads the server's TLS material and allowlist into it (see the
// package function). It returns nil without certfile.
func (s *Server) prepare(ctx context.Context) (*tls.Config, error) {
	p, err := prepare(ctx, s.cfg)
	if err != nil {
		return nil, err
	}
	s.use(p)
	return p.tls, nil
}

// use takes the prepared TLS configuration and allowlist; Serve calls it
// before it accepts the first connection.
func (s *Server) use(p *prepared) {
	s.allowlist = p.allowlist
	s.tls = p.tls != nil
}

// keyPair is the server certificate, re-read when its files change.
type keyPair struct {
	// section names the configuration section in errors ("restapi").
	section                     string
	certFile, keyFile, password string

	mu      sync.Mutex
	cert    *tls.Certificate
	modTime [2]time.Time
}

func (p *keyPair) get() (*tls.Certificate, error) {
	keyFile := p.keyFile
	if keyFile == "" {
		keyFile = p.certFile // a PEM file may hold both
	}
	var mod [2]time.Time
	for i, f := range []string{p.certFile, keyFile} {
		fi, err := os.Stat(f)
		if err != nil {
			return nil, &KeyError{Key: p.section + "." + [2]string{"certfile", keyFileKey(p.keyFile)}[i], Err: err}
		}
		mod[i] = fi.ModTime()
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cert != nil && mod == p.modTime {
		return p.cert, nil
	}
	cert, err := LoadKeyPair(p.section, p.certFile, p.keyFile, p.password)
	if err != nil {
		if p.cert != nil {
			// Mid-rotation (one file written, not the other): keep serving
			// the old pair until both match.
			return p.cert, nil
		}
		return nil, err
	}
	p.cert, p.modTime = &cert, mod
	return p.cert, nil
}

// resolveAllowlist turns restapi.allowlist entries into networks: a CIDR
// as is, an IP as a single address, a host name as each of its addresses.
func resolveAllowlist(ctx context.Context, entries []string) ([]*net.IPNet, error) {
	var nets []*net.IPNet
	for _, e := range entries {
		e = strings.TrimSpace(e)
		if strings.Contains(e, "/") {
			_, n, err := net.ParseCIDR(e)
			if err != nil {
				return nil, keyErrorf("restapi.allowlist", "%q is not a network: %w", e, err)
			}
			nets = append(nets, n)
			continue
		}
		ips, err := resolveHost(ctx, e)
		if err != nil {
			return nil, &KeyError{Key: "restapi.allowlist", Err: err}
		}
		for _, ip := range ips {
			nets = append(nets, singleIP(ip))
		}
	}
	return nets, nil
}

func singleIP(ip net.IP) *net.IPNet {
	bits := 128
	if v4 := ip.To4(); v4 != nil {
		ip, bits = v4, 32
	}
	return &net.IPNet{IP: ip, Mask: net.CIDRMask(bits, bits)}
}

func resolveHost(ctx context.Context, host string) ([]net.IP, error) {
	if ip := net.ParseIP(host); ip != nil {
		return []net.IP{ip}, nil
	}
	ctx, cancel := context.WithTimeout(ctx, resolveTimeout)
	defer cancel()
	addrs, err := net.DefaultResolver.LookupIPAddr(ctx, host)
	if err != nil {
		return nil, fmt.Errorf("resolving %s: %w", host, err)
	}
	ips := make([]net.IP, 0, len(addrs))
	for _, a := range addrs {
		ips = append(ips, a.IP)
	}
	return ips, nil
}

// requireAccess runs Patroni's access checks, in its order,
// before an unsafe method's handler: the allowlist (403), the client
// certificate with verify_client optional or required (403), basic auth
// (401 with WWW-Authenticate).
func (s *Server) requireAccess(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if (len(s.allowlist) > 0 || s.cfg.AllowlistIncludeMembers) && !s.allowed(r) {
			s.writeText(w, http.StatusForbidden, msgAccessDenied)
			return
		}
		if s.tls && (s.cfg.VerifyClient == VerifyClientOptional || s.cfg.VerifyClient == VerifyClientRequired) &&
			(r.TLS == nil || len(r.TLS.PeerCertificates) == 0) {
			s.writeText(w, http.StatusForbidden, msgClientCertMissing)
			return
		}
		if reason := s.checkAuth(r); reason != "" {
			w.Header().Set("WWW-Authenticate", authRealm)
			s.writeText(w, http.StatusUnauthorized, reason)
			return
		}
		next(w, r)
	}
}

// checkAuth returns why the request is not authenticated, "" when it is
// (or when no authentication is configured).
func (s *Server) checkAuth(r *http.Request) string {
	if s.authHeader == "" {
		return ""
	}
	got, present := r.Header["Authorization"]
	if !present {
		return msgNoAuthHeader
	}
	if len(got) != 1 || subtle.ConstantTimeCompare([]byte(got[0]), []byte(s.authHeader)) != 1 {
		return msgNotAuthenticated
	}
	return ""
}

// allowed reports whether the client address is in the allowlist or, with
// allowlist_include_members, is a member's api_url host.
func (s *Server) allowed(r *http.Request) bool {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	ip := net.ParseIP(host)
	if ip == nil {
		return false
	}
	for _, n := range s.allowlist {
		if n.Contains(ip) {
			return true
		}
	}
	if !s.cfg.AllowlistIncludeMembers {
		return false
	}
	snap := s.src.Snapshot()
	if snap == nil || snap.Cluster == nil {
		return false
	}
	for _, m := range snap.Cluster.Members {
		u, err := url.Parse(m.APIURL)
		if err != nil || u.Hostname() == "" {
			continue
		}
		ips, err := resolveHost(r.Context(), u.Hostname())
		if err != nil {
			s.logger.Debug("resolving a member's api_url for the allowlist", "member", m.Name, "error", err)
			continue
		}
		for _, mip := range ips {
			if mip.Equal(ip) {
				return true
			}
		}
	}
	return false
}
