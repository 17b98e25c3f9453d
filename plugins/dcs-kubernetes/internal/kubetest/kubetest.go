package kubetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// Versions of the servers, as .ci/build-kube builds them.
const (
	KubeVersion = "1.37.1"
	EtcdVersion = "3.6.16"
)

// Environment variables that point at the binaries instead of the cache.
const (
	APIServerBinEnv = "CUSTOS_KUBE_APISERVER_BIN"
	EtcdBinEnv      = "CUSTOS_ETCD36_BIN"
)

const (
	// startTimeout bounds the start of each server; a cold kube-apiserver
	// is ready within seconds once etcd answers.
	startTimeout = 90 * time.Second
	// startAttempts retries a start that lost a port to another process
	// between picking it and the server binding it.
	startAttempts = 3
)

// Server is a running etcd and kube-apiserver pair.
type Server struct {
	// URL is the API server's address, https://127.0.0.1:<port>.
	URL string
	// Kubeconfig is a kubeconfig file for the API server (token auth,
	// verified TLS).
	Kubeconfig string
	etcd       *process
	apiserver  *process
}

// cacheBin returns where .ci/build-kube puts a binary.
func cacheBin(name string) string {
	dir := os.Getenv("CUSTOS_CACHE")
	if dir == "" {
		home, _ := os.UserHomeDir()
		dir = filepath.Join(home, ".cache", "custos")
	}
	return filepath.Join(dir, "bin", name)
}

// binary finds a server binary: the environment variable, else the cache.
// A missing binary is an error that says how to build it.
func binary(env, name string) (string, error) {
	path := os.Getenv(env)
	from := env
	if path == "" {
		path, from = cacheBin(name), "the cache"
	}
	if fi, err := os.Stat(path); err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
		return "", fmt.Errorf("%s not found at %s (from %s): run .ci/build-kube to build it from tools/ into the cache, or set %s", name, path, from, env)
	}
	return path, nil
}

// Start starts etcd and kube-apiserver with their files under dir and
// waits until the API server is ready.
func Start(dir string) (*Server, error) {
	etcdBin, err1 := binary(EtcdBinEnv, "etcd-"+EtcdVersion)
	apiBin, err2 := binary(APIServerBinEnv, "kube-apiserver-"+KubeVersion)
	if err := errors.Join(err1, err2); err != nil {
		return nil, err
	}
	var errs []error
	for attempt := 1; attempt <= startAttempts; attempt++ {
		s, err := start(etcdBin, apiBin, filepath.Join(dir, "attempt-"+strconv.Itoa(attempt)))
		if err == nil {
			return s, nil
		}
		errs = append(errs, err)
		if !errors.Is(err, errPortTaken) {
			break
		}
	}
	return nil, errors.Join(errs...)
}

var errPortTaken = errors.New("port taken")

func start(etcdBin, apiBin, dir string) (*Server, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	ports, err := freePorts(3)
	if err != nil {
		return nil, err
	}
	etcdURL := "http://127.0.0.1:" + strconv.Itoa(ports[0])
	peerURL := "http://127.0.0.1:" + strconv.Itoa(ports[1])
	etcd, err := startProcess(etcdBin, filepath.Join(dir, "etcd.log"),
		"--name", "custos-kube-test",
		"--data-dir", filepath.Join(dir, "etcd"),
		"--listen-client-urls", etcdURL,
		"--advertise-client-urls", etcdURL,
		"--listen-peer-urls", peerURL,
		"--initial-advertise-peer-urls", peerURL,
		"--initial-cluster", "custos-kube-test="+peerURL,
		"--initial-cluster-state", "new",
		"--unsafe-no-fsync",
		"--heartbeat-interval", "50",
		"--election-timeout", "500",
		"--log-level", "warn",
	)
	if err != nil {
		return nil, err
	}
	if err := etcd.waitHTTP(etcdURL+"/health", "", `"health":"true"`, nil); err != nil {
		etcd.stop()
		return nil, etcd.failure("etcd", err)
	}

	token := make([]byte, 16)
	if _, err := rand.Read(token); err != nil {
		etcd.stop()
		return nil, err
	}
	tok := hex.EncodeToString(token)
	files, err := writeFiles(dir, tok)
	if err != nil {
		etcd.stop()
		return nil, err
	}
	apiURL := "https://127.0.0.1:" + strconv.Itoa(ports[2])
	api, err := startProcess(apiBin, filepath.Join(dir, "kube-apiserver.log"),
		"--etcd-servers", etcdURL,
		"--bind-address", "127.0.0.1",
		"--advertise-address", "127.0.0.1",
		"--secure-port", strconv.Itoa(ports[2]),
		"--cert-dir", filepath.Join(dir, "certs"),
		"--service-account-issuer", "https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file", files.saKey,
		"--service-account-signing-key-file", files.saKey,
		"--token-auth-file", files.tokens,
		"--authorization-mode", "AlwaysAllow",
		"--service-cluster-ip-range", "10.96.0.0/24",
		"--enable-priority-and-fairness=false",
		"--endpoint-reconciler-type", "none",
		"--profiling=false",
	)
	if err != nil {
		etcd.stop()
		return nil, err
	}
	s := &Server{URL: apiURL, etcd: etcd, apiserver: api}
	// Readiness is polled without verifying TLS: the serving certificate
	// only exists once the API server has started. The clients verify it.
	insecure := &tls.Config{InsecureSkipVerify: true}
	if err := api.waitHTTP(apiURL+"/readyz", tok, "ok", insecure); err != nil {
		s.Stop()
		if bytes.Contains(api.log(), []byte("address already in use")) || bytes.Contains(etcd.log(), []byte("address already in use")) {
			return nil, fmt.Errorf("%w: %v", errPortTaken, err)
		}
		return nil, api.failure("kube-apiserver", err)
	}
	s.Kubeconfig = filepath.Join(dir, "kubeconfig")
	kubeconfig := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: test
  cluster:
    server: %s
    certificate-authority: %s
users:
- name: test
  user:
    token: %s
contexts:
- name: test
  context:
    cluster: test
    user: test
current-context: test
`, apiURL, filepath.Join(dir, "certs", "apiserver.crt"), tok)
	if err := os.WriteFile(s.Kubeconfig, []byte(kubeconfig), 0o600); err != nil {
		s.Stop()
		return nil, err
	}
	return s, nil
}

type files struct{ saKey, tokens string }

// writeFiles writes the service account signing key and the token file
// (one admin user in system:masters).
func writeFiles(dir, token string) (files, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return files{}, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return files{}, err
	}
	f := files{saKey: filepath.Join(dir, "sa.key"), tokens: filepath.Join(dir, "tokens.csv")}
	if err := os.WriteFile(f.saKey, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return files{}, err
	}
	if err := os.WriteFile(f.tokens, []byte(token+`,admin,admin,"system:masters"`+"\n"), 0o600); err != nil {
		return files{}, err
	}
	return f, nil
}

// Client returns a clientset for the API server.
func (s *Server) Client() (kubernetes.Interface, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", s.Kubeconfig)
	if err != nil {
		return nil, err
	}
	cfg.QPS, cfg.Burst = 100, 200
	cfg.WarningHandler = rest.NoWarnings{} // the tests use Endpoints on purpose
	return kubernetes.NewForConfig(cfg)
}

// Stop kills both servers and waits for them.
func (s *Server) Stop() {
	if s.apiserver != nil {
		s.apiserver.stop()
	}
	if s.etcd != nil {
		s.etcd.stop()
	}
}

// Logs returns the tails of both servers' logs.
func (s *Server) Logs() string {
	return "kube-apiserver:\n" + string(tail(s.apiserver.log(), 4000)) + "\netcd:\n" + string(tail(s.etcd.log(), 2000))
}

type process struct {
	cmd     *exec.Cmd
	done    chan struct{}
	logPath string
}

func startProcess(bin, logPath string, args ...string) (*process, error) {
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logFile.Close()
	cmd := exec.Command(bin, args...)
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", bin, err)
	}
	p := &process{cmd: cmd, done: make(chan struct{}), logPath: logPath}
	go func() {
		_ = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

func (p *process) stop() {
	_ = p.cmd.Process.Kill()
	<-p.done
}

func (p *process) log() []byte {
	out, _ := os.ReadFile(p.logPath)
	return out
}

func (p *process) failure(name string, err error) error {
	return fmt.Errorf("%s: %v; log:\n%s", name, err, tail(p.log(), 4000))
}

// waitHTTP polls url (with a bearer token when given) until it answers
// 200 with a body containing want.
func (p *process) waitHTTP(url, token, want string, tlsCfg *tls.Config) error {
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	tr := &http.Transport{TLSClientConfig: tlsCfg}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	var last error
	for {
		select {
		case <-p.done:
			return fmt.Errorf("exited during start-up: %v", p.cmd.ProcessState)
		case <-ctx.Done():
			return fmt.Errorf("not ready after %v: %v", startTimeout, last)
		case <-time.After(100 * time.Millisecond): // polling interval
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := client.Do(req)
		if err != nil {
			last = err
			continue
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK && bytes.Contains(body, []byte(want)) {
			return nil
		}
		last = fmt.Errorf("%s: %d %s", url, resp.StatusCode, tail(body, 500))
	}
}

// TempRoot is where to put the servers' data: /dev/shm when it is a
// writable directory (etcd runs with --unsafe-no-fsync anyway), else the
// system's temp directory.
func TempRoot() string {
	const shm = "/dev/shm"
	if fi, err := os.Stat(shm); err == nil && fi.IsDir() {
		if f, err := os.CreateTemp(shm, "custos-probe-"); err == nil {
			_ = f.Close()
			_ = os.Remove(f.Name())
			return shm
		}
	}
	return os.TempDir()
}

// freePorts picks n distinct loopback ports nothing listens on right now.
func freePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}
