package servers

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// ZooKeeperJuteMaxBuffer is the test server's packet limit. The DCS
// contract's 1 MiB values do not fit ZooKeeper's default (1 MiB - 1) with
// the request around them; 4 MiB matches the plugin client's own limit.
const ZooKeeperJuteMaxBuffer = 4 << 20

const (
	// zkTickTime is short so that sessions expire promptly after their
	// timeout (expiry is checked once per tick).
	zkTickTime = 500 * time.Millisecond
	// zkStartTimeout bounds the JVM start; it takes ~1.5 s on an idle
	// machine.
	zkStartTimeout = 60 * time.Second
)

// Locations of Debian's zookeeper package. The jar's manifest carries the
// class path of its dependencies.
const (
	debianZooKeeperJar = "/usr/share/java/zookeeper.jar"
	debianSLF4JSimple  = "/usr/share/java/slf4j-simple.jar"
)

// Environment overrides of the ZooKeeper launcher.
const (
	// EnvJavaBin names the java binary (default: java on PATH).
	EnvJavaBin = "CUSTOS_JAVA_BIN"
	// EnvZooKeeperClassPath replaces the class path (default: Debian's
	// jar).
	EnvZooKeeperClassPath = "CUSTOS_ZOOKEEPER_CLASSPATH"
)

// ZooKeeperTLS makes the server listen for TLS clients as well.
type ZooKeeperTLS struct {
	// KeyPair is a PEM file with the server's PKCS#8 private key and its
	// certificate.
	KeyPair string
	// CA is a PEM file with the CA certificates that client certificates
	// must chain to.
	CA string
}

// ZooKeeperConfig says how to run a ZooKeeper server.
type ZooKeeperConfig struct {
	// Dir holds the data and the log; empty for a new directory under
	// TempRoot that Stop removes.
	Dir string
	// TLS, when set, adds a TLS client port. The server then uses Netty
	// (ZooKeeper's TLS needs it) on both ports and asks clients for a
	// certificate without requiring one.
	TLS *ZooKeeperTLS
}

// ZooKeeper is a throwaway standalone ZooKeeper server (Debian's, in a JVM
// of its own).
type ZooKeeper struct {
	// Addr is the plain client address, "127.0.0.1:<port>".
	Addr string
	// SecureAddr is the TLS client address when started with TLS.
	SecureAddr string
	proc       *process
	ws         workspace
}

// StartZooKeeper starts a standalone server on loopback ports picked now
// and waits until it serves requests. A missing Java or ZooKeeper is an
// error that says what to install. Stop it with Stop.
func StartZooKeeper(cfg ZooKeeperConfig) (*ZooKeeper, error) {
	java, classPath, err := locateZooKeeper()
	if err != nil {
		return nil, err
	}
	if cfg.TLS != nil {
		classPath += nettyClassPath()
	}
	z, ws, err := launch("zookeeper", cfg.Dir, func(dir string) (*ZooKeeper, error) {
		return startZooKeeper(java, classPath, dir, cfg.TLS)
	})
	if err != nil {
		return nil, err
	}
	z.ws = ws
	return z, nil
}

// locateZooKeeper finds the java binary and the server's class path.
func locateZooKeeper() (java, classPath string, err error) {
	java = os.Getenv(EnvJavaBin)
	if java == "" {
		java, err = exec.LookPath("java")
		if err != nil {
			return "", "", fmt.Errorf("no java on PATH: install Debian's zookeeper package (apt-get install zookeeper, or .ci/install-deps) or set %s", EnvJavaBin)
		}
	}
	if cp := os.Getenv(EnvZooKeeperClassPath); cp != "" {
		return java, cp, nil
	}
	if _, err := os.Stat(debianZooKeeperJar); err != nil {
		return "", "", fmt.Errorf("ZooKeeper is not installed (%v): apt-get install zookeeper (or .ci/install-deps), or set %s", err, EnvZooKeeperClassPath)
	}
	classPath = debianZooKeeperJar
	if _, err := os.Stat(debianSLF4JSimple); err == nil {
		classPath += ":" + debianSLF4JSimple // server log lines instead of slf4j's "no binding" warning
	}
	return java, classPath, nil
}

// nettyClassPath adds the Netty jars that zookeeper.jar's manifest leaves
// out but its Netty server needs.
func nettyClassPath() string {
	var cp string
	for _, jar := range []string{"netty-codec.jar", "netty-resolver.jar"} {
		p := filepath.Join(filepath.Dir(debianZooKeeperJar), jar)
		if _, err := os.Stat(p); err == nil {
			cp += ":" + p
		}
	}
	return cp
}

func startZooKeeper(java, classPath, dir string, tlsFiles *ZooKeeperTLS) (*ZooKeeper, error) {
	dataDir := filepath.Join(dir, "data")
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		return nil, err
	}
	ports, err := FreePorts(2)
	if err != nil {
		return nil, err
	}
	z := &ZooKeeper{Addr: "127.0.0.1:" + strconv.Itoa(ports[0])}
	lines := []string{
		fmt.Sprintf("tickTime=%d", zkTickTime.Milliseconds()),
		"dataDir=" + dataDir,
		fmt.Sprintf("clientPort=%d", ports[0]),
		"clientPortAddress=127.0.0.1",
		"admin.enableServer=false",
		"minSessionTimeout=1000",
		"maxSessionTimeout=60000",
		"maxClientCnxns=0",
		"4lw.commands.whitelist=ruok,srvr,stat,cons,mntr",
	}
	if tlsFiles != nil {
		z.SecureAddr = "127.0.0.1:" + strconv.Itoa(ports[1])
		lines = append(lines,
			fmt.Sprintf("secureClientPort=%d", ports[1]),
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
	cfgPath := filepath.Join(dir, "zoo.cfg")
	if err := os.WriteFile(cfgPath, []byte(strings.Join(append(lines, ""), "\n")), 0o644); err != nil {
		return nil, err
	}
	z.proc = &process{
		name: "zookeeper", bin: java, dir: dir, group: true,
		logPath: filepath.Join(dir, "zookeeper.log"),
		args: []string{
			"-Xms64m", "-Xmx512m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
			fmt.Sprintf("-Djute.maxbuffer=%d", ZooKeeperJuteMaxBuffer),
			"-Dzookeeper.forceSync=no",       // throwaway data: skip fsync
			"-Dzookeeper.preAllocSize=16384", // KiB; the default 64 MiB per log file is wasteful here
			"-Dzookeeper.jmx.log4j.disable=true",
			"-cp", classPath,
			"org.apache.zookeeper.server.ZooKeeperServerMain", cfgPath,
		},
	}
	if err := z.launch(); err != nil {
		return nil, err
	}
	return z, nil
}

// launch starts the JVM and waits until the server serves requests: it
// answers "srvr" with its version only then.
func (z *ZooKeeper) launch() error {
	if err := z.proc.start(); err != nil {
		return fmt.Errorf("%w (install Debian's zookeeper package, which brings a JRE, or set %s)", err, EnvJavaBin)
	}
	return z.proc.waitReady(zkStartTimeout, func(context.Context) error {
		out, err := z.FourLetter("srvr")
		if err == nil && !strings.HasPrefix(out, "Zookeeper version:") {
			err = fmt.Errorf("srvr answered %q", strings.TrimSpace(out))
		}
		return err
	})
}

// FourLetter sends a four-letter-word command and returns the answer.
func (z *ZooKeeper) FourLetter(cmd string) (string, error) {
	conn, err := net.DialTimeout("tcp", z.Addr, time.Second)
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

// Kill SIGKILLs the server, as a crash stops it, and waits until it is
// gone; its data stays for Restart.
func (z *ZooKeeper) Kill() { z.proc.kill() }

// Restart kills the server when it runs and starts it again on the same
// ports with the same data: sessions whose timeout has not passed live on.
func (z *ZooKeeper) Restart() error {
	z.proc.kill()
	if err := z.launch(); err != nil {
		return fmt.Errorf("restarting zookeeper: %w", err)
	}
	return nil
}

// Stop kills the server and removes the directory StartZooKeeper made for
// it.
func (z *ZooKeeper) Stop() {
	z.proc.kill()
	z.ws.remove()
}

// Log returns what the server logged so far.
func (z *ZooKeeper) Log() string { return string(z.proc.log()) }
