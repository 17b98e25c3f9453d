package testenv

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// Versions of the Kubernetes test servers: the ones tools/kube-apiserver
// and tools/etcd require and .ci/build-kube builds.
const (
	KubeVersion   = "1.37.1"
	Etcd36Version = "3.6.16"
)

// Environment variables that name the Kubernetes test servers' binaries
// instead of the cache.
const (
	EnvKubeAPIServerBin = "CUSTOS_KUBE_APISERVER_BIN"
	EnvEtcd36Bin        = "CUSTOS_ETCD36_BIN"
)

const (
	// kubeStartTimeout bounds the start of each server; a cold
	// kube-apiserver is ready within seconds once etcd answers, more on a
	// busy machine.
	kubeStartTimeout = 90 * time.Second
	// kubeStartAttempts retries a start that lost a port to another process
	// between picking it and a server binding it.
	kubeStartAttempts = 3
)

// Kube is a throwaway kube-apiserver with its etcd 3.6, each in its own
// process: token authentication, AlwaysAllow authorization, no
// controllers (nothing but the API).
type Kube struct {
	// URL is the API server's "https://127.0.0.1:<port>".
	URL string
	// Token is the bearer token of an admin user.
	Token string
	// CA is the PEM of the API server's self-signed serving certificate.
	CA []byte
	// Kubeconfig is a self-contained kubeconfig file for the API server
	// (token, verified TLS), readable by the user the agents run as (the
	// postgres user when the tests run as root).
	Kubeconfig  string
	client      *http.Client
	closeClient func()
	etcd        *process
	apiserver   *process
}

// StartKube starts etcd 3.6 and kube-apiserver (the binaries from
// $CUSTOS_ETCD36_BIN and $CUSTOS_KUBE_APISERVER_BIN, else the cache
// .ci/build-kube fills) on loopback ports picked now and waits until the
// API serves the default namespace. Both are killed in t.Cleanup. A
// missing binary fails the test with how to build it.
func StartKube(t testing.TB) *Kube {
	t.Helper()
	etcdBin := serverBinary(t, EnvEtcd36Bin, "etcd-"+Etcd36Version, ".ci/build-kube")
	apiBin := serverBinary(t, EnvKubeAPIServerBin, "kube-apiserver-"+KubeVersion, ".ci/build-kube")
	dir, err := os.MkdirTemp(fastTempRoot(), "custos-kube-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	var errs []error
	for attempt := 1; attempt <= kubeStartAttempts; attempt++ {
		k, err := startKube(etcdBin, apiBin, filepath.Join(dir, "attempt-"+strconv.Itoa(attempt)))
		if err == nil {
			t.Cleanup(k.stop)
			k.writeKubeconfig(t)
			return k
		}
		errs = append(errs, err)
		if !errors.Is(err, errPortTaken) {
			break
		}
	}
	t.Fatalf("starting kube-apiserver: %v", errors.Join(errs...))
	return nil
}

func startKube(etcdBin, apiBin, dir string) (*Kube, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	ports, err := freePorts(3)
	if err != nil {
		return nil, err
	}
	etcdURL := "http://127.0.0.1:" + strconv.Itoa(ports[0])
	peerURL := "http://127.0.0.1:" + strconv.Itoa(ports[1])
	k := &Kube{URL: "https://127.0.0.1:" + strconv.Itoa(ports[2])}
	k.etcd, err = startProcess(etcdBin, filepath.Join(dir, "etcd.log"),
		"--name", "custos-kube",
		"--data-dir", filepath.Join(dir, "etcd"),
		"--listen-client-urls", etcdURL,
		"--advertise-client-urls", etcdURL,
		"--listen-peer-urls", peerURL,
		"--initial-advertise-peer-urls", peerURL,
		"--initial-cluster", "custos-kube="+peerURL,
		"--initial-cluster-state", "new",
		"--unsafe-no-fsync",
		"--heartbeat-interval", strconv.Itoa(etcdHeartbeatMS),
		"--election-timeout", strconv.Itoa(etcdElectionMS),
		"--log-level", "warn",
	)
	if err != nil {
		return nil, err
	}
	plain, closePlain := newHTTPClient(nil)
	defer closePlain()
	if err := waitReady(k.etcd, kubeStartTimeout, func(ctx context.Context) error {
		_, err := httpGet(ctx, plain, etcdURL+"/health", "")
		return err
	}); err != nil {
		k.stop()
		return nil, k.etcd.failure("etcd", err)
	}

	files, err := writeKubeFiles(dir)
	if err != nil {
		k.stop()
		return nil, err
	}
	k.Token = files.token
	certDir := filepath.Join(dir, "certs")
	k.apiserver, err = startProcess(apiBin, filepath.Join(dir, "kube-apiserver.log"),
		"--etcd-servers", etcdURL,
		"--bind-address", "127.0.0.1",
		"--advertise-address", "127.0.0.1",
		"--secure-port", strconv.Itoa(ports[2]),
		"--cert-dir", certDir,
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
		k.stop()
		return nil, err
	}
	// The serving certificate exists only once the API server runs: wait
	// without verifying it, then verify it from here on.
	insecure, closeInsecure := newHTTPClient(&tls.Config{InsecureSkipVerify: true})
	defer closeInsecure()
	if err := waitReady(k.apiserver, kubeStartTimeout, func(ctx context.Context) error {
		_, err := httpGet(ctx, insecure, k.URL+"/readyz", k.Token)
		return err
	}); err != nil {
		k.stop()
		return nil, k.apiserver.failure("kube-apiserver", err)
	}
	if k.CA, err = os.ReadFile(filepath.Join(certDir, "apiserver.crt")); err != nil {
		k.stop()
		return nil, fmt.Errorf("reading the API server's certificate: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(k.CA) {
		k.stop()
		return nil, errors.New("the API server's certificate is not PEM")
	}
	k.client, k.closeClient = newHTTPClient(&tls.Config{RootCAs: pool})
	// The system namespaces appear shortly after readiness.
	if err := waitReady(k.apiserver, kubeStartTimeout, func(ctx context.Context) error {
		_, err := k.Get(ctx, "/api/v1/namespaces/default")
		return err
	}); err != nil {
		k.stop()
		return nil, k.apiserver.failure("kube-apiserver", err)
	}
	return k, nil
}

// Get returns the body of a 200 answer to GET path (e.g.
// "/api/v1/namespaces/default/configmaps") from the API server.
func (k *Kube) Get(ctx context.Context, path string) ([]byte, error) {
	return httpGet(ctx, k.client, k.URL+path, k.Token)
}

func (k *Kube) stop() {
	if k.closeClient != nil {
		k.closeClient()
	}
	if k.apiserver != nil {
		k.apiserver.stop()
	}
	if k.etcd != nil {
		k.etcd.stop()
	}
}

// Logs returns the tails of both servers' logs.
func (k *Kube) Logs() string {
	return fmt.Sprintf("kube-apiserver:\n%s\netcd:\n%s", lastBytes(k.apiserver.log(), 4000), lastBytes(k.etcd.log(), 2000))
}

type kubeFiles struct{ saKey, tokens, token string }

// writeKubeFiles writes the service account signing key and the token file
// with one admin user (in system:masters) and a random token.
func writeKubeFiles(dir string) (kubeFiles, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return kubeFiles{}, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return kubeFiles{}, err
	}
	tok := make([]byte, 16)
	if _, err := rand.Read(tok); err != nil {
		return kubeFiles{}, err
	}
	f := kubeFiles{saKey: filepath.Join(dir, "sa.key"), tokens: filepath.Join(dir, "tokens.csv"), token: hex.EncodeToString(tok)}
	if err := os.WriteFile(f.saKey, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return kubeFiles{}, err
	}
	if err := os.WriteFile(f.tokens, []byte(f.token+`,admin,admin,"system:masters"`+"\n"), 0o600); err != nil {
		return kubeFiles{}, err
	}
	return f, nil
}

// writeKubeconfig writes Kubeconfig with the CA and the token inline, in a
// directory of its own that, like the file, belongs to the user the agents
// run as (postgres when the tests run as root).
func (k *Kube) writeKubeconfig(t testing.TB) {
	t.Helper()
	dir, err := os.MkdirTemp("", "custos-kubeconfig-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	k.Kubeconfig = filepath.Join(dir, "kubeconfig")
	data := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: custos-test
  cluster:
    server: %s
    certificate-authority-data: %s
users:
- name: admin
  user:
    token: %s
contexts:
- name: custos-test
  context:
    cluster: custos-test
    user: admin
current-context: custos-test
`, k.URL, base64.StdEncoding.EncodeToString(k.CA), k.Token)
	if err := os.WriteFile(k.Kubeconfig, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	if os.Getuid() != 0 {
		return
	}
	u, err := user.Lookup(PostgresUser)
	if err != nil {
		t.Fatalf("looking up the %s user: %v (install PostgreSQL: apt-get install postgresql-15)", PostgresUser, err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	for _, p := range []string{dir, k.Kubeconfig} {
		if err := os.Chown(p, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
}
