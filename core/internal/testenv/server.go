package testenv

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// What the launchers of the Consul and Kubernetes servers share.

var errPortTaken = errors.New("port taken")

// cacheDir is where .ci/build-consul and .ci/build-kube put what they
// build: ${CUSTOS_CACHE:-$HOME/.cache/custos}.
func cacheDir() string {
	if d := os.Getenv("CUSTOS_CACHE"); d != "" {
		return d
	}
	home, err := os.UserHomeDir()
	if err != nil {
		home = "/root"
	}
	return filepath.Join(home, ".cache", "custos")
}

// serverBinary is the binary named by the environment variable env, else
// <cache>/bin/<name>. A missing one fails the test with the script that
// builds it.
func serverBinary(t testing.TB, env, name, script string) string {
	t.Helper()
	path, from := os.Getenv(env), env
	if path == "" {
		path, from = filepath.Join(cacheDir(), "bin", name), "the cache"
	}
	if fi, err := os.Stat(path); err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
		t.Fatalf("%s not found at %s (from %s): run %s from the repository root (it builds it from tools/ into the cache, minutes cold) or set %s",
			name, path, from, script, env)
	}
	return path
}

// process is a server started by a launcher.
type process struct {
	cmd     *exec.Cmd
	done    chan struct{}
	logPath string
}

// startProcess starts bin with its output in logPath; it dies with the
// test binary even when the clean-up does not run.
func startProcess(bin, logPath string, args ...string) (*process, error) {
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logFile.Close()
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{}
	dieWithParent(cmd.SysProcAttr)
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

// failure describes a failed start with the tail of the log; a lost port
// wraps errPortTaken, so that the launcher tries again.
func (p *process) failure(name string, err error) error {
	out := p.log()
	if bytes.Contains(out, []byte("address already in use")) {
		return fmt.Errorf("%s: %w: %v", name, errPortTaken, err)
	}
	return fmt.Errorf("%s: %v; log:\n%s", name, err, lastBytes(out, 4000))
}

// waitReady polls ready until it succeeds, the process exits or timeout
// passes.
func waitReady(p *process, timeout time.Duration, ready func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var last error
	for {
		select {
		case <-p.done:
			return fmt.Errorf("exited during start-up: %v", p.cmd.ProcessState)
		case <-ctx.Done():
			return fmt.Errorf("not ready after %v: %v", timeout, last)
		case <-time.After(100 * time.Millisecond): // polling interval
		}
		if last = ready(ctx); last == nil {
			return nil
		}
	}
}

// httpGet returns the body of a 200 answer to GET url, with a bearer token
// when one is given.
func httpGet(ctx context.Context, client *http.Client, url, token string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %d %s", url, resp.StatusCode, lastBytes(body, 500))
	}
	return body, nil
}

// newHTTPClient returns a client with a transport of its own (TLS settled
// by tlsCfg) and the function that closes its idle connections, so that no
// keep-alive goroutine outlives the caller.
func newHTTPClient(tlsCfg *tls.Config) (*http.Client, func()) {
	tr := &http.Transport{TLSClientConfig: tlsCfg}
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}, tr.CloseIdleConnections
}
