package servers

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
	"time"
)

// EnvKubeAPIServerBin names the kube-apiserver StartKube runs instead of
// the cache's (EnvEtcd36Bin names its etcd).
const EnvKubeAPIServerBin = "CUSTOS_KUBE_APISERVER_BIN"

// kubeStartTimeout bounds the start of the API server; a cold
// kube-apiserver is ready within seconds once etcd answers, more on a busy
// machine.
const kubeStartTimeout = 90 * time.Second

// PostgresUser is the OS user the agents under test run as when the tests
// run as root (PostgreSQL refuses to run as root); the files a server
// hands to the agents belong to it.
const PostgresUser = "postgres"

// KubeConfig says how to run kube-apiserver and its etcd.
type KubeConfig struct {
	// APIServerBin and EtcdBin are the binaries: empty for
	// $CUSTOS_KUBE_APISERVER_BIN and Etcd36Binary, else the cache's,
	// waiting for a build of them in progress.
	APIServerBin, EtcdBin string
	// Dir holds the data, certificates and logs; empty for a new directory
	// under TempRoot that Stop removes.
	Dir string
}

// Kube is a throwaway kube-apiserver with its etcd 3.6, each in its own
// process: token authentication, AlwaysAllow authorization, no
// controllers (nothing but the API).
type Kube struct {
	// URL is the API server's "https://127.0.0.1:<port>".
	URL string
	// Token is the bearer token of an admin user (in system:masters).
	Token string
	// CA is the PEM of the API server's self-signed serving certificate.
	CA []byte
	// Kubeconfig is a self-contained kubeconfig file for the API server
	// (token, verified TLS), readable by the user the agents run as (the
	// postgres user when the tests run as root).
	Kubeconfig  string
	client      *http.Client
	closeClient func()
	etcd        *Etcd
	apiserver   *process
	ws          workspace
	kubeconfDir string
}

// KubeBinaries returns kube-apiserver and etcd 3.6: from the environment
// variables, else the cache's, waiting for a build of them in progress.
func KubeBinaries() (apiserver, etcd string, err error) {
	apiserver, err1 := cachedBinary(EnvKubeAPIServerBin, "kube-apiserver-"+KubeVersion)
	etcd, err2 := Etcd36Binary()
	return apiserver, etcd, errors.Join(err1, err2)
}

// StartKube starts etcd 3.6 and kube-apiserver on loopback ports picked
// now and waits until the API serves the default namespace. A missing
// binary is an error that says how to build it. Stop them with Stop.
func StartKube(cfg KubeConfig) (*Kube, error) {
	if cfg.APIServerBin == "" || cfg.EtcdBin == "" {
		api, etcd, err := KubeBinaries()
		if err != nil {
			return nil, err
		}
		cfg.APIServerBin = orDefault(cfg.APIServerBin, api)
		cfg.EtcdBin = orDefault(cfg.EtcdBin, etcd)
	}
	k, ws, err := launch("kube-apiserver", cfg.Dir, func(dir string) (*Kube, error) { return startKube(cfg, dir) })
	if err != nil {
		return nil, err
	}
	k.ws = ws
	if err := k.writeKubeconfig(); err != nil {
		k.Stop()
		return nil, fmt.Errorf("starting kube-apiserver: writing the kubeconfig: %w", err)
	}
	return k, nil
}

func orDefault(s, or string) string {
	if s != "" {
		return s
	}
	return or
}

func startKube(cfg KubeConfig, dir string) (*Kube, error) {
	etcd, err := StartEtcd(EtcdConfig{Bin: cfg.EtcdBin, Dir: filepath.Join(dir, "etcd"), Name: "custos-kube", NoFsync: true})
	if err != nil {
		return nil, err
	}
	k := &Kube{etcd: etcd}
	ports, err := FreePorts(1)
	if err != nil {
		k.Stop()
		return nil, err
	}
	k.URL = "https://127.0.0.1:" + strconv.Itoa(ports[0])
	files, err := writeKubeFiles(dir)
	if err != nil {
		k.Stop()
		return nil, err
	}
	k.Token = files.token
	certDir := filepath.Join(dir, "certs")
	k.apiserver = &process{name: "kube-apiserver", bin: cfg.APIServerBin, logPath: filepath.Join(dir, "kube-apiserver.log"), args: []string{
		"--etcd-servers", etcd.ClientURL(),
		"--bind-address", "127.0.0.1",
		"--advertise-address", "127.0.0.1",
		"--secure-port", strconv.Itoa(ports[0]),
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
	}}
	if err := k.apiserver.start(); err != nil {
		k.Stop()
		return nil, err
	}
	// The serving certificate exists only once the API server runs: wait
	// without verifying it, then verify it from here on.
	insecure, closeInsecure := newHTTPClient(&tls.Config{InsecureSkipVerify: true})
	defer closeInsecure()
	if err := k.apiserver.waitReady(kubeStartTimeout, func(ctx context.Context) error {
		_, err := httpGet(ctx, insecure, k.URL+"/readyz", k.Token)
		return err
	}); err != nil {
		k.Stop()
		return nil, err
	}
	if k.CA, err = os.ReadFile(filepath.Join(certDir, "apiserver.crt")); err != nil {
		k.Stop()
		return nil, fmt.Errorf("reading the API server's certificate: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(k.CA) {
		k.Stop()
		return nil, errors.New("the API server's certificate is not PEM")
	}
	k.client, k.closeClient = newHTTPClient(&tls.Config{RootCAs: pool})
	// The system namespaces appear shortly after readiness.
	if err := k.apiserver.waitReady(kubeStartTimeout, func(ctx context.Context) error {
		_, err := k.Get(ctx, "/api/v1/namespaces/default")
		return err
	}); err != nil {
		k.Stop()
		return nil, err
	}
	return k, nil
}

// Get returns the body of a 200 answer to GET path (e.g.
// "/api/v1/namespaces/default/configmaps") from the API server, as the
// admin user.
func (k *Kube) Get(ctx context.Context, path string) ([]byte, error) {
	return httpGet(ctx, k.client, k.URL+path, k.Token)
}

// Stop kills both servers and removes the directories StartKube made.
func (k *Kube) Stop() {
	if k.closeClient != nil {
		k.closeClient()
	}
	if k.apiserver != nil {
		k.apiserver.kill()
	}
	if k.etcd != nil {
		k.etcd.Stop()
	}
	if k.kubeconfDir != "" {
		_ = os.RemoveAll(k.kubeconfDir)
	}
	k.ws.remove()
}

// Logs returns the tails of both servers' logs.
func (k *Kube) Logs() string {
	return fmt.Sprintf("kube-apiserver:\n%s\netcd:\n%s", lastBytes(k.apiserver.log(), logTail), lastBytes(k.etcd.proc.log(), logTail/2))
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
// directory of its own under the system's temp directory that, like the
// file, belongs to the postgres user when the tests run as root (the
// server's directory stays root's).
func (k *Kube) writeKubeconfig() error {
	dir, err := os.MkdirTemp("", "custos-kubeconfig-")
	if err != nil {
		return err
	}
	k.kubeconfDir = dir
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
		return err
	}
	if os.Getuid() != 0 {
		return nil
	}
	u, err := user.Lookup(PostgresUser)
	if err != nil {
		// No agent can run as that user either: the file stays root's.
		return nil
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	for _, p := range []string{dir, k.Kubeconfig} {
		if err := os.Chown(p, uid, gid); err != nil {
			return err
		}
	}
	return nil
}
