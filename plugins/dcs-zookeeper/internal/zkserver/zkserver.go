// Package zkserver starts a throwaway standalone ZooKeeper server for the
// plugin's integration tests: the JVM from Debian's zookeeper package, a
// temporary data directory, a free loopback port. It is test support only.
package zkserver

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Defaults of the test server.
const (
	// JuteMaxBuffer is the server's packet limit. The contract's 1 MiB
	// values do not fit ZooKeeper's default (1 MiB - 1) with the request
	// around them; 4 MiB matches the plugin client's own limit.
	JuteMaxBuffer = 4 << 20
	// tickTime is short so that sessions expire promptly after their
	// timeout (expiry is checked once per tick).
	tickTime = 500 * time.Millisecond
	// startTimeout bounds the JVM start; it takes ~1.5 s on an idle machine.
	startTimeout = 60 * time.Second
	// bindAttempts is how often a start is tried with a new port when the
	// chosen one was taken in between.
	bindAttempts = 3
)

// Locations of Debian's zookeeper package. The jar's manifest carries the
// class path of its dependencies.
const (
	debianJar      = "/usr/share/java/zookeeper.jar"
	debianSLF4JSim = "/usr/share/java/slf4j-simple.jar"
)

// Environment overrides.
const (
	// EnvJava names the java binary (default: java from PATH).
	EnvJava = "CUSTOS_JAVA_BIN"
	// EnvClassPath replaces the class path (default: Debian's jar).
	EnvClassPath = "CUSTOS_ZOOKEEPER_CLASSPATH"
)

// TLS makes the server listen for TLS clients as well.
type TLS struct {
	// KeyPair is a PEM file with the server's PKCS#8 private key and its
	// certificate.
	KeyPair string
	// CA is a PEM file with the CA certificates that client certificates
	// must chain to.
	CA string
}

// errPortTaken marks a start that failed because another process took
// the chosen port first.
var errPortTaken = errors.New("port taken")

// Server is a running ZooKeeper server.
type Server struct {
	// Addr is the plain client address, 127.0.0.1:<port>.
	Addr string
	// SecureAddr is the TLS client address when started with TLS.
	SecureAddr string

	dir     string
	logPath string
	java    string
	args    []string
	cmd     *exec.Cmd
	exited  chan struct{}
	waitErr error
}

// Start runs a standalone server with its data under dir (which must
// exist) and returns once it serves requests.
func Start(dir string) (*Server, error) { return StartTLS(dir, nil) }

// StartTLS is Start with a TLS port as well when tlsFiles is set. The
// server then uses Netty (ZooKeeper's TLS needs it) on both ports and asks
// clients for a certificate without requiring one.
func StartTLS(dir string, tlsFiles *TLS) (*Server, error) {
	java, classPath, err := locate()
	if err != nil {
		return nil, err
	}
	if tlsFiles != nil {
		classPath += nettyClassPath()
	}
	var lastErr error
	for attempt := 0; attempt < bindAttempts; attempt++ {
		srv, err := start(java, classPath, filepath.Join(dir, fmt.Sprintf("zk%d", attempt)), tlsFiles)
		if err == nil {
			return srv, nil
		}
		lastErr = err
		if !errors.Is(err, errPortTaken) {
			break
		}
	}
	return nil, lastErr
}

// locate finds the java binary and the server's class path.
func locate() (java, classPath string, err error) {
	java = os.Getenv(EnvJava)
	if java == "" {
		java, err = exec.LookPath("java")
		if err != nil {
			return "", "", fmt.Errorf("no java in PATH: install Debian's zookeeper package (apt-get install zookeeper, or .ci/install-deps) or set %s", EnvJava)
		}
	}
	if cp := os.Getenv(EnvClassPath); cp != "" {
		return java, cp, nil
	}
	if _, err := os.Stat(debianJar); err != nil {
		return "", "", fmt.Errorf("ZooKeeper is not installed (%v): apt-get install zookeeper (or .ci/install-deps), or set %s", err, EnvClassPath)
	}
	classPath = debianJar
	if _, err := os.Stat(debianSLF4JSim); err == nil {
		classPath += ":" + debianSLF4JSim // server log lines instead of slf4j's "no binding" warning
	}
	return java, classPath, nil
}

// nettyClassPath adds the Netty jars that zookeeper.jar's manifest leaves
// out but its Netty server needs.
func nettyClassPath() string {
	var cp string
	for _, jar := range []string{"netty-codec.jar", "netty-resolver.jar"} {
		p := filepath.Join(filepath.Dir(debianJar), jar)
		if _, err := os.Stat(p); err == nil {
			cp += ":" + p
		}
	}
	return cp
}

func start(java, classPath, dir string, tlsFiles *TLS) (*Server, error) {
	dataDir := filepath.Join(dir, "data")
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	cfgPath := filepath.Join(dir, "zoo.cfg")
	lines := []string{
		fmt.Sprintf("tickTime=%d", tickTime.Milliseconds()),
		"dataDir=" + dataDir,
		fmt.Sprintf("clientPort=%d", port),
		"clientPortAddress=127.0.0.1",
		"admin.enableServer=false",
		"minSessionTimeout=1000",
		"maxSessionTimeout=60000",
		"maxClientCnxns=0",
		"4lw.commands.whitelist=ruok,srvr,stat,cons,mntr",
	}
	var secureAddr string
	if tlsFiles != nil {
		securePort, err := freePort()
		if err != nil {
			return nil, err
		}
		secureAddr = fmt.Sprintf("127.0.0.1:%d", securePort)
		lines = append(lines,
			fmt.Sprintf("secureClientPort=%d", securePort),
			"secureClientPortAddress=127.0.0.1",
			"serverCnxnFactory=org.apache.zookeeper.server.NettyServerCnxnFactory",
			"ssl.keyStore.location="+tlsFiles.KeyPair,
			"ssl.keyStore.type=PEM",
			"ssl.trustStore.location="+tlsFiles.CA,
			"ssl.trustStore.type=PEM",
			"ssl.clientAuth=want",
			// Client certificates authenticate as x509:<subject DN>.
			"authProvider.x509=org.apache.zookeeper.server.auth.X509AuthenticationProvider",
		)
	}
	cfg := strings.Join(append(lines, ""), "\n")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		return nil, err
	}
	srv := &Server{
		Addr: addr, SecureAddr: secureAddr, dir: dir,
		logPath: filepath.Join(dir, "zookeeper.log"),
		args: []string{
			"-Xms64m", "-Xmx512m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
			fmt.Sprintf("-Djute.maxbuffer=%d", JuteMaxBuffer),
			"-Dzookeeper.forceSync=no",       // throwaway data: skip fsync
			"-Dzookeeper.preAllocSize=16384", // KiB; the default 64 MiB per log file is wasteful here
			"-Dzookeeper.jmx.log4j.disable=true",
			"-cp", classPath,
			"org.apache.zookeeper.server.ZooKeeperServerMain", cfgPath,
		},
		java: java,
	}
	if err := srv.run(); err != nil {
		return nil, err
	}
	return srv, nil
}

// run starts the JVM and waits until it serves requests.
func (s *Server) run() error {
	logFile, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logFile.Close()
	cmd := exec.Command(s.java, s.args...)
	cmd.Dir = s.dir
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// Own process group, and SIGKILL if the test binary dies first.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w (install Debian's zookeeper package, which brings a JRE, or set %s)", s.java, err, EnvJava)
	}
	exited := make(chan struct{})
	s.cmd, s.exited = cmd, exited
	go func() {
		s.waitErr = cmd.Wait()
		close(exited)
	}()
	deadline := time.Now().Add(startTimeout)
	for {
		if err := s.probe(); err == nil {
			return nil
		} else if time.Now().After(deadline) {
			s.Stop()
			return fmt.Errorf("zookeeper on %s not serving after %v: %v\n%s", s.Addr, startTimeout, err, s.LogTail(40))
		}
		select {
		case <-exited:
			tail := s.LogTail(40)
			err := fmt.Errorf("zookeeper on %s exited at start: %v\n%s", s.Addr, s.waitErr, tail)
			if strings.Contains(tail, "Address already in use") {
				err = fmt.Errorf("%w: %w", errPortTaken, err)
			}
			return err
		case <-time.After(50 * time.Millisecond): // polling interval
		}
	}
}

// probe asks the server "srvr", which answers with its version only once it
// serves requests.
func (s *Server) probe() error {
	out, err := s.FourLetter("srvr")
	if err != nil {
		return err
	}
	if !strings.HasPrefix(out, "Zookeeper version:") {
		return fmt.Errorf("srvr answered %q", strings.TrimSpace(out))
	}
	return nil
}

// FourLetter sends a four-letter-word command and returns the answer.
func (s *Server) FourLetter(cmd string) (string, error) {
	conn, err := net.DialTimeout("tcp", s.Addr, time.Second)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := conn.Write([]byte(cmd)); err != nil {
		return "", err
	}
	out, err := io.ReadAll(conn)
	if err != nil && len(out) == 0 {
		return "", err
	}
	return string(out), nil
}

// Restart starts a stopped server again on the same ports with the same
// data: sessions whose timeout has not passed live on.
func (s *Server) Restart() error {
	s.Stop()
	return s.run()
}

// Stop kills the server (SIGKILL, as a crash) and waits for it.
func (s *Server) Stop() {
	select {
	case <-s.exited:
		return
	default:
	}
	_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
	<-s.exited
}

// LogTail returns the last n lines of the server's log.
func (s *Server) LogTail(n int) string {
	data, err := os.ReadFile(s.logPath)
	if err != nil {
		return fmt.Sprintf("(no server log: %v)", err)
	}
	var lines []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// freePort asks the kernel for a free loopback port. Another process may
// take it before the server binds it; Start then tries again.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	addr, ok := l.Addr().(*net.TCPAddr)
	if !ok {
		return 0, errors.New("listener without a TCP address")
	}
	return addr.Port, nil
}
