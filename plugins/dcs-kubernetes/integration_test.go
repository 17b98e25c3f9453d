//go:build integration

package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"go.uber.org/goleak"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/custos-ha/custos/plugin/sdk"
	"github.com/custos-ha/custos/plugin/sdk/dcs"
	"github.com/custos-ha/custos/plugin/sdk/dcs/dcstest"
	"github.com/custos-ha/custos/plugin/sdk/sdktest"
	"github.com/custos-ha/custos/plugins/dcs-kubernetes/kube"
	"github.com/custos-ha/custos/testkit/servers"
)

// Shared by every test of the package: one API server, one plugin build.
var (
	server    *servers.Kube
	apiClient kubernetes.Interface
)

// minParallel is how many parallel tests run at once unless -parallel says
// otherwise. The tests mostly wait for TTLs to run out, so more of them than
// GOMAXPROCS (2 on CI machines) fit side by side.
const minParallel = 8

func TestMain(m *testing.M) {
	flag.Parse()
	sdktest.RaiseParallel(minParallel)
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	defer plugin.Close()
	var err error
	start := time.Now()
	server, err = servers.StartKube(servers.KubeConfig{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Fprintf(os.Stderr, "etcd %s and kube-apiserver %s ready in %v\n", servers.Etcd36Version, servers.KubeVersion, time.Since(start).Round(10*time.Millisecond))
	if apiClient, err = clientFor(server.Kubeconfig); err != nil {
		server.Stop()
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	code := m.Run()
	if code != 0 {
		fmt.Fprintln(os.Stderr, server.Logs())
	}
	server.Stop()
	if code == 0 {
		// client-go's shared transports keep idle connections to the
		// stopped server; everything the plugin starts must be gone.
		if err := goleak.Find(
			goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
			goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
			goleak.IgnoreAnyFunction("k8s.io/klog/v2.(*flushDaemon).run.func1"),
		); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	return code
}

// testTTL is the TTL of the tests here (the kit uses its own).
const testTTL = 3 * time.Second

func configJSON(extra string) []byte {
	c := fmt.Sprintf(`{"kubeconfig": %q`, server.Kubeconfig)
	if extra != "" {
		c += ", " + extra
	}
	return []byte(c + "}")
}

// clientFor returns a clientset for the API server a kubeconfig names.
func clientFor(kubeconfig string) (kubernetes.Interface, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, err
	}
	cfg.QPS, cfg.Burst = 100, 200
	cfg.WarningHandler = rest.NoWarnings{} // the tests use Endpoints on purpose
	return kubernetes.NewForConfig(cfg)
}

func testLogger() hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Name: "kubernetes", Level: hclog.Warn, Output: os.Stderr})
}

// plugin is this plugin's binary, built once.
var plugin = sdktest.NewBuilder("dcs-kubernetes")

func pluginPath(t *testing.T) string { return plugin.Path(t) }

func TestConformance(t *testing.T) {
	t.Parallel()
	dcstest.RunConformance(t, dcstest.Target{
		New:          func(*testing.T) dcs.Backend { return kube.New(testLogger()) },
		Config:       configJSON(""),
		Capabilities: kube.Capabilities(),
	})
}

func TestConformanceEndpoints(t *testing.T) {
	t.Parallel()
	dcstest.RunConformance(t, dcstest.Target{
		New:          func(*testing.T) dcs.Backend { return kube.New(testLogger()) },
		Config:       configJSON(`"use_endpoints": true, "pod_ip": "10.0.0.1"`),
		Capabilities: kube.Capabilities(),
	})
}

func TestIdentity(t *testing.T) {
	t.Parallel()
	id, _ := dcstest.LaunchBinary(t, pluginPath(t))
	if id.Name != "kubernetes" || !id.Serves(sdk.KindDCS) || id.Version == "" {
		t.Fatalf("identity %s", id)
	}
	if !reflect.DeepEqual(id.Capabilities, kube.Capabilities()) || id.Capabilities[dcs.CapClientSideTTL] != "true" {
		t.Fatalf("capabilities %v", id.Capabilities)
	}
}

func ctxT(t *testing.T) context.Context { return sdktest.Context(t, 15*time.Second) }

// uniqueScope returns a cluster name no other test uses.
func uniqueScope(t *testing.T) string {
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return "pg" + hex.EncodeToString(b[:])
}

// newNamespace creates a Kubernetes namespace of the test's own, with the
// default service account Pods need (no controller-manager runs here to
// create it).
func newNamespace(t *testing.T) string {
	t.Helper()
	ns := "ns-" + uniqueScope(t)
	if _, err := apiClient.CoreV1().Namespaces().Create(ctxT(t), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}
	if _, err := apiClient.CoreV1().ServiceAccounts(ns).Create(ctxT(t), sa, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return ns
}

type member struct {
	scope, name string
	ttl         time.Duration
	config      []byte
}

func configure(t *testing.T, b dcs.Backend, m member) {
	t.Helper()
	if m.ttl == 0 {
		m.ttl = testTTL
	}
	err := b.Configure(ctxT(t), dcs.ConfigureRequest{
		Scope: m.scope, Member: m.name, TTL: m.ttl, RetryTimeout: 5 * time.Second, Config: m.config,
	})
	if err != nil {
		t.Fatalf("configuring %s: %v", m.name, err)
	}
	t.Cleanup(func() { _ = b.Close(context.Background()) })
}

func newBackend(t *testing.T, m member) *kube.Backend {
	t.Helper()
	b := kube.New(testLogger())
	configure(t, b, m)
	return b
}

func read(t *testing.T, b dcs.Backend) *dcs.Cluster {
	t.Helper()
	c, err := b.GetCluster(ctxT(t))
	if err != nil {
		t.Fatalf("GetCluster: %v", err)
	}
	return c
}

func configMap(t *testing.T, ns, name string) *corev1.ConfigMap {
	t.Helper()
	cm, err := apiClient.CoreV1().ConfigMaps(ns).Get(ctxT(t), name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("reading ConfigMap %s/%s: %v", ns, name, err)
	}
	return cm
}

func endpoints(t *testing.T, ns, name string) *corev1.Endpoints {
	t.Helper()
	ep, err := apiClient.CoreV1().Endpoints(ns).Get(ctxT(t), name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("reading Endpoints %s/%s: %v", ns, name, err)
	}
	return ep
}

func wantAnnotations(t *testing.T, what string, got, want map[string]string) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%s annotations\n got %v\nwant %v", what, got, want)
	}
}

func wantLabels(t *testing.T, what string, got, want map[string]string) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%s labels\n got %v\nwant %v", what, got, want)
	}
}

// parseTime checks a Patroni timestamp (ISO 8601 with offset, UTC).
func parseTime(t *testing.T, what, s string) time.Time {
	t.Helper()
	at, err := time.Parse("2006-01-02T15:04:05.999999-07:00", s)
	if err != nil || !strings.HasSuffix(s, "+00:00") {
		t.Fatalf("%s %q is not an ISO 8601 UTC time: %v", what, s, err)
	}
	return at
}

// TestPatroniLayout checks what lands in Kubernetes, object by object,
// against Patroni's layout (object names, annotations, labels), in both
// modes.
func TestPatroniLayout(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"configmaps", "endpoints"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			ns := newNamespace(t)
			scope := uniqueScope(t)
			extra := fmt.Sprintf(`"namespace": %q, "labels": {"application": "spilo"}, "scope_label": "cluster-name"`, ns)
			endpointsMode := mode == "endpoints"
			if endpointsMode {
				extra += `, "use_endpoints": true, "pod_ip": "10.0.0.7", "ports": [{"name": "postgresql", "port": 5432}]`
			}
			a := newBackend(t, member{scope: scope, name: "a", config: configJSON(extra)})
			b := newBackend(t, member{scope: scope, name: "b", config: configJSON(extra)})
			labels := map[string]string{"application": "spilo", "cluster-name": scope}

			// Bootstrap race, config, history.
			v, err := a.CompareAndSet(ctxT(t), dcs.KeyInitialize, []byte(""), "")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := a.CompareAndSet(ctxT(t), dcs.KeyInitialize, []byte("7268616322854375442"), v); err != nil {
				t.Fatal(err)
			}
			config := `{"ttl":30,"loop_wait":10}`
			if _, err := a.CompareAndSet(ctxT(t), dcs.KeyConfig, []byte(config), ""); err != nil {
				t.Fatal(err)
			}
			history := `[[1,25165984,"no recovery target specified","2024-01-01T00:00:00+00:00","a"]]`
			if err := a.Set(ctxT(t), dcs.KeyHistory, []byte(history)); err != nil {
				t.Fatal(err)
			}
			var cfgMeta metav1.ObjectMeta
			if endpointsMode {
				cfgMeta = endpoints(t, ns, scope+"-config").ObjectMeta
				svc, err := apiClient.CoreV1().Services(ns).Get(ctxT(t), scope+"-config", metav1.GetOptions{})
				if err != nil {
					t.Fatalf("the config Service: %v", err)
				}
				if svc.Spec.ClusterIP != corev1.ClusterIPNone {
					t.Fatalf("config Service cluster IP %q, want None (headless)", svc.Spec.ClusterIP)
				}
				wantLabels(t, "config Service", svc.Labels, labels)
			} else {
				cfgMeta = configMap(t, ns, scope+"-config").ObjectMeta
			}
			wantAnnotations(t, "config", cfgMeta.Annotations, map[string]string{"initialize": "7268616322854375442", "config": config, "history": history})
			wantLabels(t, "config", cfgMeta.Labels, labels)

			// Leader race, status, failsafe.
			before := time.Now().Add(-time.Second)
			if _, err := a.AcquireLeader(ctxT(t)); err != nil {
				t.Fatal(err)
			}
			if err := a.Set(ctxT(t), dcs.KeyStatus, []byte(`{"optime":25166136,"slots":{"b":25166136},"retain_slots":["a","b"]}`)); err != nil {
				t.Fatal(err)
			}
			if err := a.Set(ctxT(t), dcs.KeyFailsafe, []byte(`{"a":"http://10.0.0.7:8008/patroni"}`)); err != nil {
				t.Fatal(err)
			}
			leaderName := scope + "-leader"
			if endpointsMode {
				leaderName = scope
			}
			leaderMeta := func() (metav1.ObjectMeta, []corev1.EndpointSubset) {
				if endpointsMode {
					ep := endpoints(t, ns, leaderName)
					return ep.ObjectMeta, ep.Subsets
				}
				return configMap(t, ns, leaderName).ObjectMeta, nil
			}
			meta, subsets := leaderMeta()
			ann := meta.Annotations
			acquired := parseTime(t, "acquireTime", ann["acquireTime"])
			if acquired.Before(before) || acquired.After(time.Now().Add(time.Second)) {
				t.Fatalf("acquireTime %s is not now", ann["acquireTime"])
			}
			if ann["renewTime"] != ann["acquireTime"] {
				t.Fatalf("renewTime %s != acquireTime %s on acquisition", ann["renewTime"], ann["acquireTime"])
			}
			wantAnnotations(t, "leader", ann, map[string]string{
				"leader": "a", "acquireTime": ann["acquireTime"], "renewTime": ann["renewTime"], "ttl": "3", "transitions": "0",
				"optime": "25166136", "slots": `{"b":25166136}`, "retain_slots": `["a","b"]`,
				"failsafe": `{"a":"http://10.0.0.7:8008/patroni"}`,
			})
			wantLabels(t, "leader", meta.Labels, labels)
			if len(subsets) != 0 {
				t.Fatalf("subsets %v right after the acquisition, want none (Patroni empties them)", subsets)
			}
			// A renewal moves renewTime only, and points the Endpoints at
			// the leader.
			time.Sleep(10 * time.Millisecond) // renewTime has microseconds; make them differ
			if err := a.RenewLeader(ctxT(t)); err != nil {
				t.Fatal(err)
			}
			meta, subsets = leaderMeta()
			if meta.Annotations["renewTime"] == ann["renewTime"] || meta.Annotations["acquireTime"] != ann["acquireTime"] || meta.Annotations["transitions"] != "0" {
				t.Fatalf("after a renewal %v (was %v)", meta.Annotations, ann)
			}
			if endpointsMode {
				want := []corev1.EndpointSubset{{
					Addresses: []corev1.EndpointAddress{{IP: "10.0.0.7"}},
					Ports:     []corev1.EndpointPort{{Name: "postgresql", Port: 5432, Protocol: corev1.ProtocolTCP}},
				}}
				if !reflect.DeepEqual(subsets, want) {
					t.Fatalf("leader subsets %+v, want %+v", subsets, want)
				}
			}
			// Release: the leader annotation goes, the record stays, the
			// subsets are emptied; the next holder counts a transition.
			if err := a.DeleteLeader(ctxT(t)); err != nil {
				t.Fatal(err)
			}
			meta, subsets = leaderMeta()
			if _, ok := meta.Annotations["leader"]; ok || meta.Annotations["transitions"] != "0" || meta.Annotations["optime"] != "25166136" {
				t.Fatalf("after release %v", meta.Annotations)
			}
			if len(subsets) != 0 {
				t.Fatalf("subsets %v after release", subsets)
			}
			if _, err := b.AcquireLeader(ctxT(t)); err != nil {
				t.Fatal(err)
			}
			meta, _ = leaderMeta()
			if meta.Annotations["leader"] != "b" || meta.Annotations["transitions"] != "1" {
				t.Fatalf("after b acquired %v", meta.Annotations)
			}

			// Failover and sync, field by field.
			failover := `{"leader":"b","member":"a","scheduled_at":"2030-01-01T00:00:00+00:00"}`
			fv, err := a.CompareAndSet(ctxT(t), dcs.KeyFailover, []byte(failover), "")
			if err != nil {
				t.Fatal(err)
			}
			sync := `{"leader":"b","quorum":0,"sync_standby":"a"}`
			if _, err := b.CompareAndSet(ctxT(t), dcs.KeySync, []byte(sync), ""); err != nil {
				t.Fatal(err)
			}
			objMeta := func(name string) metav1.ObjectMeta {
				if endpointsMode {
					return endpoints(t, ns, name).ObjectMeta
				}
				return configMap(t, ns, name).ObjectMeta
			}
			fo := objMeta(scope + "-failover")
			wantAnnotations(t, "failover", fo.Annotations, map[string]string{"leader": "b", "member": "a", "scheduled_at": "2030-01-01T00:00:00+00:00"})
			wantLabels(t, "failover", fo.Labels, labels)
			if fo.ResourceVersion != fv {
				t.Fatalf("failover version %s, want its resourceVersion %s", fv, fo.ResourceVersion)
			}
			so := objMeta(scope + "-sync")
			wantAnnotations(t, "sync", so.Annotations, map[string]string{"leader": "b", "quorum": "0", "sync_standby": "a"})
			// Cleaning the failover leaves an object without annotations.
			if _, err := b.CompareAndSet(ctxT(t), dcs.KeyFailover, []byte(`{}`), fv); err != nil {
				t.Fatal(err)
			}
			wantAnnotations(t, "failover after clean-up", objMeta(scope+"-failover").Annotations, nil)

			// Members outside Pods: ConfigMaps <scope>-member-<name>.
			if err := a.TouchMember(ctxT(t), []byte(`{"role":"replica","state":"running","conn_url":"postgres://10.0.0.8:5432/postgres"}`)); err != nil {
				t.Fatal(err)
			}
			mm := configMap(t, ns, scope+"-member-a")
			if mm.Annotations["status"] != `{"role":"replica","state":"running","conn_url":"postgres://10.0.0.8:5432/postgres"}` {
				t.Fatalf("member annotations %v", mm.Annotations)
			}
			parseTime(t, "member renewTime", mm.Annotations["renewTime"])
			wantLabels(t, "member", mm.Labels, map[string]string{"application": "spilo", "cluster-name": scope, "role": "replica"})

			// What a reader makes of all this.
			c := read(t, a)
			if c.Leader == nil || c.Leader.Name != "b" || string(c.Initialize.Data) != "7268616322854375442" ||
				string(c.Config.Data) != config || string(c.History.Data) != history ||
				string(c.Sync.Data) != sync || string(c.Failover.Data) != "{}" ||
				string(c.Status.Data) != `{"optime":25166136,"slots":{"b":25166136},"retain_slots":["a","b"]}` ||
				len(c.Members) != 1 || c.Members[0].Name != "a" {
				t.Fatalf("read back %+v", c)
			}
		})
	}
}

// TestConfigCASIgnoresHistory checks the per-key versions of keys sharing
// an object: a compare-and-set on config succeeds after history (same
// ConfigMap) changed, and fails after config changed.
func TestConfigCASIgnoresHistory(t *testing.T) {
	t.Parallel()
	scope := uniqueScope(t)
	a := newBackend(t, member{scope: scope, name: "a", config: configJSON("")})
	v1, err := a.CompareAndSet(ctxT(t), dcs.KeyConfig, []byte(`{"ttl":30}`), "")
	if err != nil {
		t.Fatal(err)
	}
	before := configMap(t, "default", scope+"-config").ResourceVersion
	if err := a.Set(ctxT(t), dcs.KeyHistory, []byte(`[]`)); err != nil {
		t.Fatal(err)
	}
	if after := configMap(t, "default", scope+"-config").ResourceVersion; after == before {
		t.Fatal("writing history did not change the object's resourceVersion; the test proves nothing")
	}
	if got := read(t, a).Config.Version; got != v1 {
		t.Fatalf("config version moved from %s to %s when history changed", v1, got)
	}
	v2, err := a.CompareAndSet(ctxT(t), dcs.KeyConfig, []byte(`{"ttl":20}`), v1)
	if err != nil {
		t.Fatalf("CAS on config after a history write: %v", err)
	}
	if _, err := a.CompareAndSet(ctxT(t), dcs.KeyConfig, []byte(`{"ttl":10}`), v1); !errors.Is(err, dcs.ErrVersionMismatch) {
		t.Fatalf("CAS with the version before the config change: want ErrVersionMismatch, got %v", err)
	}
	if got := read(t, a); string(got.Config.Data) != `{"ttl":20}` || got.Config.Version != v2 || string(got.History.Data) != "[]" {
		t.Fatalf("read %+v", got)
	}
}

// newPod creates a Pod as a StatefulSet would: labelled for the cluster. No
// kubelet runs here, so it stays Pending; its metadata works all the same.
func newPod(t *testing.T, ns, name string, labels map[string]string) *corev1.Pod {
	t.Helper()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "postgres", Image: "postgres:15"}}},
	}
	got, err := apiClient.CoreV1().Pods(ns).Create(ctxT(t), pod, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating Pod %s: %v", name, err)
	}
	return got
}

func pod(t *testing.T, ns, name string) *corev1.Pod {
	t.Helper()
	p, err := apiClient.CoreV1().Pods(ns).Get(ctxT(t), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestMemberStores checks where member records live: in Pod mode on the
// member's Pod (Patroni's layout, role labels on the Pod, no ConfigMap),
// outside Pods in a member ConfigMap (no Pod needed, none touched).
func TestMemberStores(t *testing.T) {
	t.Parallel()
	t.Run("Pod", func(t *testing.T) {
		t.Parallel()
		ns := newNamespace(t)
		scope := uniqueScope(t)
		labels := map[string]string{"application": "spilo", "cluster-name": scope}
		newPod(t, ns, "pg-0", labels)
		newPod(t, ns, "pg-1", labels)
		other := newPod(t, ns, "other", map[string]string{"application": "spilo", "cluster-name": "another"})
		cfg := configJSON(fmt.Sprintf(`"namespace": %q, "labels": {"application": "spilo"}, "member_store": "pod", "tmp_role_label": "tmp-role"`, ns))
		p0 := newBackend(t, member{scope: scope, name: "pg-0", config: cfg})
		p1 := newBackend(t, member{scope: scope, name: "pg-1", config: cfg})
		if err := p0.TouchMember(ctxT(t), []byte(`{"role":"primary","state":"running"}`)); err != nil {
			t.Fatal(err)
		}
		if err := p1.TouchMember(ctxT(t), []byte(`{"role":"replica","state":"running"}`)); err != nil {
			t.Fatal(err)
		}
		got := pod(t, ns, "pg-0")
		if got.Annotations["status"] != `{"role":"primary","state":"running"}` {
			t.Fatalf("pg-0 annotations %v", got.Annotations)
		}
		parseTime(t, "Pod renewTime", got.Annotations["renewTime"])
		wantLabels(t, "pg-0", got.Labels, map[string]string{"application": "spilo", "cluster-name": scope, "role": "primary", "tmp-role": "master"})
		wantLabels(t, "pg-1", pod(t, ns, "pg-1").Labels, map[string]string{"application": "spilo", "cluster-name": scope, "role": "replica", "tmp-role": "replica"})
		// No controller-manager runs here to publish kube-root-ca.crt: any
		// ConfigMap in the namespace would be the plugin's.
		if cms, err := apiClient.CoreV1().ConfigMaps(ns).List(ctxT(t), metav1.ListOptions{}); err != nil || len(cms.Items) != 0 {
			t.Fatalf("Pod mode created ConfigMaps: %v %v", cms, err)
		}
		c := read(t, p1)
		if len(c.Members) != 2 || c.Member("pg-0") == nil || string(c.Member("pg-1").Data) != `{"role":"replica","state":"running"}` {
			t.Fatalf("members %+v", c.Members)
		}
		if p := pod(t, ns, "other"); p.ResourceVersion != other.ResourceVersion {
			t.Fatal("a Pod of another cluster was written")
		}
		// A stopped member loses its role label.
		if err := p1.TouchMember(ctxT(t), []byte(`{"role":"replica","state":"stopped"}`)); err != nil {
			t.Fatal(err)
		}
		wantLabels(t, "stopped pg-1", pod(t, ns, "pg-1").Labels, map[string]string{"application": "spilo", "cluster-name": scope})
		// A member without a Pod cannot write.
		lost := newBackend(t, member{scope: scope, name: "pg-9", config: cfg})
		if err := lost.TouchMember(ctxT(t), []byte(`{}`)); err == nil || !strings.Contains(err.Error(), "Pod") {
			t.Fatalf("TouchMember without a Pod: %v", err)
		}
		// A Pod written by Patroni (status, no renewTime) is a member as long
		// as the Pod exists, as Patroni reads it; custos records expire.
		patch := []byte(`{"metadata":{"annotations":{"status":"{\"role\":\"replica\",\"state\":\"running\"}"}}}`)
		newPod(t, ns, "patroni-2", labels)
		if _, err := apiClient.CoreV1().Pods(ns).Patch(ctxT(t), "patroni-2", "application/merge-patch+json", patch, metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(testTTL + 3*time.Second)
		for {
			c := read(t, p1)
			if c.Member("pg-0") == nil && c.Member("pg-1") == nil {
				if c.Member("patroni-2") == nil {
					t.Fatal("the Patroni member expired with the custos ones")
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("custos member records not renewed for %v still present: %+v", testTTL+3*time.Second, c.Members)
			}
			time.Sleep(100 * time.Millisecond) // polling interval
		}
	})

	t.Run("ConfigMap", func(t *testing.T) {
		t.Parallel()
		ns := newNamespace(t)
		scope := uniqueScope(t)
		labels := map[string]string{"cluster-name": scope}
		p := newPod(t, ns, "a", labels) // a Pod named like the member, which must stay untouched
		cfg := configJSON(fmt.Sprintf(`"namespace": %q, "member_store": "configmap"`, ns))
		a := newBackend(t, member{scope: scope, name: "a", config: cfg})
		if err := a.TouchMember(ctxT(t), []byte(`{"role":"primary","state":"running"}`)); err != nil {
			t.Fatal(err)
		}
		cm := configMap(t, ns, scope+"-member-a")
		if cm.Annotations["status"] != `{"role":"primary","state":"running"}` {
			t.Fatalf("member ConfigMap annotations %v", cm.Annotations)
		}
		wantLabels(t, "member ConfigMap", cm.Labels, map[string]string{"cluster-name": scope, "role": "primary"})
		if got := pod(t, ns, "a"); got.ResourceVersion != p.ResourceVersion {
			t.Fatalf("ConfigMap mode wrote the Pod: %v", got.Annotations)
		}
		c := read(t, a)
		if len(c.Members) != 1 || c.Members[0].Name != "a" {
			t.Fatalf("members %+v (the Pod without status must not count)", c.Members)
		}
		if err := a.DeleteCluster(ctxT(t)); err != nil {
			t.Fatal(err)
		}
		if _, err := apiClient.CoreV1().ConfigMaps(ns).Get(ctxT(t), scope+"-member-a", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Fatalf("member ConfigMap after DeleteCluster: %v", err)
		}
	})

	t.Run("EndpointsTargetPod", func(t *testing.T) {
		t.Parallel()
		ns := newNamespace(t)
		scope := uniqueScope(t)
		p := newPod(t, ns, "pg-0", map[string]string{"cluster-name": scope})
		// No kubelet: set the Pod's IP as one would report it.
		p.Status.PodIP = "10.0.0.9"
		p.Status.PodIPs = []corev1.PodIP{{IP: "10.0.0.9"}}
		p, err := apiClient.CoreV1().Pods(ns).UpdateStatus(ctxT(t), p, metav1.UpdateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		cfg := configJSON(fmt.Sprintf(`"namespace": %q, "member_store": "pod", "use_endpoints": true`, ns))
		a := newBackend(t, member{scope: scope, name: "pg-0", config: cfg})
		if err := a.TouchMember(ctxT(t), []byte(`{"role":"primary","state":"running"}`)); err != nil {
			t.Fatal(err)
		}
		if _, err := a.AcquireLeader(ctxT(t)); err != nil {
			t.Fatal(err)
		}
		// The Pod's IP comes from the watch; renew until it is in place.
		deadline := time.Now().Add(5 * time.Second)
		for {
			if err := a.RenewLeader(ctxT(t)); err != nil {
				t.Fatal(err)
			}
			ep := endpoints(t, ns, scope)
			if len(ep.Subsets) == 1 && len(ep.Subsets[0].Addresses) == 1 {
				addr := ep.Subsets[0].Addresses[0]
				if addr.IP != "10.0.0.9" || addr.TargetRef == nil || addr.TargetRef.Kind != "Pod" || addr.TargetRef.Name != "pg-0" || addr.TargetRef.UID != p.UID {
					t.Fatalf("leader address %+v", addr)
				}
				if ports := ep.Subsets[0].Ports; len(ports) != 1 || ports[0].Port != 5432 {
					t.Fatalf("leader ports %+v", ports)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("leader subsets %+v", ep.Subsets)
			}
			time.Sleep(100 * time.Millisecond) // polling interval
		}
	})
}

// TestReadsPatroniCluster writes a cluster as Patroni does (ConfigMaps and
// Pods) and checks what custos reads.
func TestReadsPatroniCluster(t *testing.T) {
	t.Parallel()
	ns := newNamespace(t)
	scope := uniqueScope(t)
	labels := map[string]string{"application": "spilo", "cluster-name": scope}
	create := func(name string, ann map[string]string) {
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels, Annotations: ann}}
		if _, err := apiClient.CoreV1().ConfigMaps(ns).Create(ctxT(t), cm, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	create(scope+"-config", map[string]string{"config": `{"ttl":30,"loop_wait":10}`, "initialize": "7268616322854375442", "history": "[]"})
	create(scope+"-leader", map[string]string{
		"leader": "pg-1", "acquireTime": "2024-01-01T00:00:00.000000+00:00", "renewTime": "2024-01-01T00:00:00.000000+00:00",
		"ttl": "30", "transitions": "4", "optime": "67108864", "slots": `{"pg_0":67108864}`, "retain_slots": `["pg-0","pg-1"]`,
	})
	create(scope+"-failover", nil)
	create(scope+"-sync", map[string]string{"leader": "pg-1", "sync_standby": "pg-0", "quorum": "0"})
	for _, name := range []string{"pg-0", "pg-1"} {
		newPod(t, ns, name, labels)
		status := fmt.Sprintf(`{"conn_url":"postgres://10.0.0.1:5432/postgres","api_url":"http://10.0.0.1:8008/patroni","state":"running","role":"replica","version":"4.0.4","name":%q}`, name)
		patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{"status": status}}})
		if _, err := apiClient.CoreV1().Pods(ns).Patch(ctxT(t), name, "application/merge-patch+json", patch, metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	cfg := configJSON(fmt.Sprintf(`"namespace": %q, "labels": {"application": "spilo"}, "member_store": "pod"`, ns))
	b := newBackend(t, member{scope: scope, name: "pg-0", config: cfg})
	c := read(t, b)
	if c.Leader == nil || c.Leader.Name != "pg-1" {
		t.Fatalf("leader %+v: a renewTime long past must not matter, only when the record was seen", c.Leader)
	}
	for k, want := range map[dcs.Key]string{
		dcs.KeyConfig:     `{"ttl":30,"loop_wait":10}`,
		dcs.KeyInitialize: "7268616322854375442",
		dcs.KeyHistory:    "[]",
		dcs.KeyStatus:     `{"optime":67108864,"slots":{"pg_0":67108864},"retain_slots":["pg-0","pg-1"]}`,
		dcs.KeyFailover:   `{}`,
		dcs.KeySync:       `{"leader":"pg-1","quorum":0,"sync_standby":"pg-0"}`,
	} {
		if got := c.Get(k); got == nil || string(got.Data) != want {
			t.Errorf("%s reads %+v, want %s", k, got, want)
		}
	}
	if c.Failsafe != nil {
		t.Errorf("failsafe %q without its annotation", c.Failsafe.Data)
	}
	if len(c.Members) != 2 || !strings.Contains(string(c.Member("pg-1").Data), `"name":"pg-1"`) {
		t.Fatalf("members %+v", c.Members)
	}
	// Patroni's leader record is never renewed here: it expires one ttl
	// (its own, 30 s) after this reader first saw it. Renewing it as
	// Patroni does keeps it.
	if err := b.RenewLeader(ctxT(t)); !errors.Is(err, dcs.ErrVersionMismatch) {
		t.Fatalf("renewing pg-1's live lock as pg-0: want ErrVersionMismatch, got %v", err)
	}
}

// TestBinary runs the conformance kit and the crash tests through the
// built plugin binary, with the keys in ConfigMaps.
func TestBinary(t *testing.T) {
	t.Parallel()
	dcstest.RunBinary(t, dcstest.Binary{Path: pluginPath(t), Config: configJSON(""), Restart: sameLock(false)})
}

// TestCrashEndpoints runs the crash tests with the keys in Endpoints.
func TestCrashEndpoints(t *testing.T) {
	t.Parallel()
	dcstest.RunCrash(t, dcstest.Binary{Path: pluginPath(t), Config: configJSON(`"use_endpoints": true`), Restart: sameLock(true)})
}

// sameLock checks that a plugin restarted within the TTL renews the lock
// its predecessor held: same holder, same acquireTime and transitions, so
// no failover is seen.
func sameLock(useEndpoints bool) dcstest.RestartChecks {
	annotations := func(t *testing.T, p dcstest.Place) map[string]string {
		if useEndpoints {
			return endpoints(t, "default", p.Scope).Annotations
		}
		return configMap(t, "default", p.Scope+"-leader").Annotations
	}
	var before map[string]string
	return dcstest.RestartChecks{
		Killed: func(t *testing.T, p dcstest.Place) { before = annotations(t, p) },
		Renewed: func(t *testing.T, p dcstest.Place) {
			after := annotations(t, p)
			if after["leader"] != "a" || after["acquireTime"] != before["acquireTime"] || after["transitions"] != before["transitions"] || after["renewTime"] == before["renewTime"] {
				t.Fatalf("after the restart %v (before %v)", after, before)
			}
		},
	}
}

// TestWatchSeesForeignChanges checks event paths and types for writes made
// by other clients, including a plain kubectl-style edit.
func TestWatchSeesForeignChanges(t *testing.T) {
	t.Parallel()
	scope := uniqueScope(t)
	a := newBackend(t, member{scope: scope, name: "a", config: configJSON("")})
	b := newBackend(t, member{scope: scope, name: "b", config: configJSON("")})
	var mu sync.Mutex
	var got []dcs.Event
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- b.Watch(ctx, func(e dcs.Event) {
			mu.Lock()
			got = append(got, e)
			mu.Unlock()
		})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Watch returned %v after its context ended", err)
		}
	})
	waitFor := func(typ dcs.EventType, path string) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for time.Now().Before(deadline) {
			mu.Lock()
			for i, e := range got {
				if e.Type == typ && e.Path == path {
					got = append(got[:i:i], got[i+1:]...)
					mu.Unlock()
					return
				}
			}
			mu.Unlock()
			time.Sleep(10 * time.Millisecond) // polling interval
		}
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("no %s %s event; got %v", typ, path, got)
	}
	// Give the watch time to list; a write then must show up.
	for deadline := time.Now().Add(5 * time.Second); ; {
		if err := a.Set(ctxT(t), dcs.KeyStatus, []byte(`{"optime":1}`)); err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		n := len(got)
		mu.Unlock()
		if n > 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond) // the watch is being set up
	}
	waitFor(dcs.EventPut, "status")
	if _, err := a.AcquireLeader(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	waitFor(dcs.EventPut, "leader")
	if _, err := a.CompareAndSet(ctxT(t), dcs.KeyConfig, []byte(`{}`), ""); err != nil {
		t.Fatal(err)
	}
	waitFor(dcs.EventPut, "config")
	if err := a.TouchMember(ctxT(t), []byte(`{"state":"running"}`)); err != nil {
		t.Fatal(err)
	}
	waitFor(dcs.EventPut, "members/a")
	// Renewals are no events.
	if err := a.RenewLeader(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	// An edit by hand, as kubectl annotate would do it.
	patch := []byte(`{"metadata":{"annotations":{"config":"{\"ttl\":20}"}}}`)
	if _, err := apiClient.CoreV1().ConfigMaps("default").Patch(ctxT(t), scope+"-config", "application/merge-patch+json", patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(dcs.EventPut, "config")
	if err := apiClient.CoreV1().ConfigMaps("default").Delete(ctxT(t), scope+"-leader", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(dcs.EventDelete, "leader")
	waitFor(dcs.EventDelete, "status")
	mu.Lock()
	defer mu.Unlock()
	for _, e := range got {
		if e.Path == "leader" && e.Type == dcs.EventPut {
			t.Fatalf("a renewal made an event: %v", got)
		}
	}
}

// TestBypassAPIService checks bypass_api_service: the API server addresses
// come from the Endpoints default/kubernetes; when none of them answers,
// the client falls back to the configured address. (Endpoints refuse
// loopback addresses, so the success path against this loopback-only API
// server cannot be shown here; the dialer's order is unit-tested.)
func TestBypassAPIService(t *testing.T) {
	t.Parallel()
	scope := uniqueScope(t)
	cfg := configJSON(`"bypass_api_service": true`)
	err := kube.New(testLogger()).Configure(ctxT(t), dcs.ConfigureRequest{
		Scope: scope, Member: "a", TTL: testTTL, RetryTimeout: 2 * time.Second, Config: cfg,
	})
	if err == nil || !strings.Contains(err.Error(), "default/kubernetes") {
		t.Fatalf("Configure without the kubernetes Endpoints: %v", err)
	}
	// 192.0.2.1 is TEST-NET-1: nothing answers there.
	ep := &corev1.Endpoints{
		ObjectMeta: metav1.ObjectMeta{Name: "kubernetes"},
		Subsets: []corev1.EndpointSubset{{
			Addresses: []corev1.EndpointAddress{{IP: "192.0.2.1"}},
			Ports:     []corev1.EndpointPort{{Name: "https", Port: 6443}},
		}},
	}
	if _, err := apiClient.CoreV1().Endpoints("default").Create(ctxT(t), ep, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = apiClient.CoreV1().Endpoints("default").Delete(context.Background(), "kubernetes", metav1.DeleteOptions{})
	})
	a := newBackend(t, member{scope: scope, name: "a", config: cfg})
	if _, err := a.AcquireLeader(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if c := read(t, a); c.Leader == nil || c.Leader.Name != "a" {
		t.Fatalf("leader %+v", c.Leader)
	}
}
