package agent

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	apiruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	kubefake "k8s.io/client-go/kubernetes/fake"
	corelisters "k8s.io/client-go/listers/core/v1"
	discoverylisters "k8s.io/client-go/listers/discovery/v1"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"
	mcsfake "sigs.k8s.io/mcs-api/pkg/client/clientset/versioned/fake"
	mcslisters "sigs.k8s.io/mcs-api/pkg/client/listers/apis/v1beta1"

	"github.com/strait-io/strait/internal/agent/agenttest"
	"github.com/strait-io/strait/internal/agent/env"
	"github.com/strait-io/strait/internal/agent/importer"
	"github.com/strait-io/strait/internal/clusterset"
	"github.com/strait-io/strait/internal/mcs"
	"github.com/strait-io/strait/internal/records"
)

// importWorld is a member (c1) that imports what another member (c2) exports: services
// Services of endpoints endpoints each, in one namespace, as the broker and the member's
// own API server hold them once the import is complete.
type importWorld struct {
	member, broker *env.Cluster
	keys           int
}

const benchNamespace = "bench"

func newImportWorld(tb testing.TB, services, endpoints int) *importWorld {
	tb.Helper()
	brokerKube, brokerMCS := kubefake.NewClientset(), mcsfake.NewSimpleClientset()
	memberKube, memberMCS := kubefake.NewClientset(), mcsfake.NewSimpleClientset()
	add := func(tr interface {
		Add(o apiruntime.Object) error
	}, o apiruntime.Object) {
		if err := tr.Add(o); err != nil {
			tb.Fatal(err)
		}
	}
	now := metav1.NewTime(time.Now())
	for _, id := range []string{"c1", "c2"} {
		add(brokerKube.Tracker(), &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: clusterset.RegistryName(id), Namespace: clusterset.ClustersetNamespace},
			Data: clusterset.MembershipData(clusterset.Member{ID: id})})
		add(brokerKube.Tracker(), &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: "strait-agent", Namespace: clusterset.MemberNamespace(id),
			Labels: map[string]string{clusterset.ManagedByLabel: clusterset.ManagedByValue}},
			Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To(id), LeaseDurationSeconds: ptr.To(int32(15)), RenewTime: &metav1.MicroTime{Time: now.Time}}})
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: benchNamespace, UID: "ns-bench"}}
	add(memberKube.Tracker(), ns)
	namespaces := corelisters.NewNamespaceLister(agenttest.Indexer(ns))
	memberNS := clusterset.MemberNamespace("c2")
	for i := range services {
		name := fmt.Sprintf("svc-%05d", i)
		si := records.ToServiceImport(memberNS, mcs.Export{Cluster: "c2", Namespace: benchNamespace, Name: name, Type: mcsv1beta1.ClusterSetIP,
			Ports: []mcsv1beta1.ServicePort{{Name: "http", Protocol: corev1.ProtocolTCP, Port: 80}}})
		si.UID, si.CreationTimestamp, si.ResourceVersion = types.UID("rec-"+name), now, "1"
		add(brokerMCS.Tracker(), si)
		s := &discoveryv1.EndpointSlice{
			ObjectMeta: metav1.ObjectMeta{Name: records.SliceName(benchNamespace, name, discoveryv1.AddressTypeIPv4), Namespace: memberNS,
				Labels: records.Labels("c2", benchNamespace, name), UID: types.UID("recslice-" + name), ResourceVersion: "1", CreationTimestamp: now},
			AddressType: discoveryv1.AddressTypeIPv4,
			Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Protocol: ptr.To(corev1.ProtocolTCP), Port: ptr.To(int32(8080))}},
		}
		for j := range endpoints {
			s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{
				Addresses:  []string{fmt.Sprintf("10.2.%d.%d", (i*endpoints+j)/250%250, (i*endpoints+j)%250+1)},
				Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true), Serving: ptr.To(true), Terminating: ptr.To(false)},
			})
		}
		add(brokerKube.Tracker(), s)
		// The member's import, written by an importer whose caches hold this Service's
		// records, so that the agent started later finds every import complete.
		im := &importer.Importer{
			Local: memberKube, LocalMCS: memberMCS,
			Records: mcslisters.NewServiceImportLister(agenttest.Indexer(si)), RecordSlices: discoverylisters.NewEndpointSliceLister(agenttest.Indexer(s)),
			Namespaces: namespaces, Imports: mcslisters.NewServiceImportLister(agenttest.Indexer()),
			Services: corelisters.NewServiceLister(agenttest.Indexer()), Slices: discoverylisters.NewEndpointSliceLister(agenttest.Indexer()),
			Liveness: agenttest.Liveness{},
		}
		if err := im.Reconcile(context.Background(), benchNamespace+"/"+name); err != nil {
			tb.Fatal(err)
		}
	}
	w := &importWorld{
		member: &env.Cluster{Config: &rest.Config{Host: "http://127.0.0.1:1"}, Kube: memberKube, Control: memberKube, MCS: memberMCS},
		broker: &env.Cluster{Config: &rest.Config{Host: "http://127.0.0.1:1"}, Kube: brokerKube, Control: brokerKube, MCS: brokerMCS},
		keys:   services,
	}
	memberKube.ClearActions()
	memberMCS.ClearActions()
	return w
}

// heap is the live heap after a full collection, and the heap in use (with the free
// space of spans that hold live objects: what the lab benchmark reads).
func heap() (alloc, inuse uint64) {
	var ms runtime.MemStats
	for range 2 {
		runtime.GC()
	}
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc, ms.HeapInuse
}

// writeHeapProfile writes the heap profile of now (go tool pprof -sample_index=inuse_space).
func writeHeapProfile(tb testing.TB, path string) {
	f, err := os.Create(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	if err := pprof.WriteHeapProfile(f); err != nil {
		tb.Fatal(err)
	}
}

// counter sums a counter of the registry over the labels given.
func counter(reg *prometheus.Registry, name string, labels map[string]string) float64 {
	mfs, _ := reg.Gather()
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if v, ok := labels[lp.GetName()]; ok && v != lp.GetValue() {
					continue metrics
				}
			}
			sum += value(m)
		}
	}
	return sum
}

func value(m *dto.Metric) float64 {
	if c := m.GetCounter(); c != nil {
		return c.GetValue()
	}
	return m.GetGauge().GetValue()
}

// run starts an agent's term on the world and waits until the importer has reconciled
// every Service once and its queue is empty: a resync of everything.
func (w *importWorld) run(tb testing.TB, ctx context.Context) (*Agent, time.Duration, <-chan error) {
	cfg := DefaultConfig()
	cfg.LeaderElect = false
	cfg.MetricsAddress, cfg.HealthAddress = "", ""
	// The leases are never renewed here: the members must not be withdrawn meanwhile.
	cfg.GracePeriod = time.Hour
	a := &Agent{cfg: cfg, ClusterID: "c1", member: w.member, broker: w.broker, registry: prometheus.NewRegistry()}
	start := time.Now()
	done := make(chan error, 1)
	go func() { done <- a.lead(ctx) }()
	import_ := map[string]string{"reconciler": "import"}
	for {
		select {
		case err := <-done:
			tb.Fatalf("the agent's term ended: %v", err)
		case <-time.After(20 * time.Millisecond):
		}
		if counter(a.registry, "strait_reconcile_total", import_) >= float64(w.keys) &&
			counter(a.registry, "strait_queue_depth", import_) == 0 {
			return a, time.Since(start), done
		}
	}
}

// BenchmarkAgentImportMemory measures the agent's heap per 10,000 imported endpoints: a
// member imports 1,000 Services of 10 endpoints each from another; the agent (all its
// reconcilers, as `strait agent` runs them, on fake clientsets) starts on a member and a
// broker that already hold the complete import, reconciles every Service once (a resync:
// it writes nothing) and its live heap is read, less what the fake API servers hold.
func BenchmarkAgentImportMemory(b *testing.B) {
	for _, size := range []struct{ services, endpoints int }{{1000, 10}, {3000, 10}, {10000, 10}} {
		b.Run(fmt.Sprintf("services=%d/endpoints=%d", size.services, size.endpoints), func(b *testing.B) {
			klog.SetLogger(klog.Background().V(10)) // quiet
			for range b.N {
				w := newImportWorld(b, size.services, size.endpoints)
				before, beforeInuse := heap()
				ctx, cancel := context.WithCancel(context.Background())
				a, resync, done := w.run(b, ctx)
				after, afterInuse := heap()
				if path := os.Getenv("STRAIT_HEAP_PROFILE"); path != "" {
					writeHeapProfile(b, path)
				}
				writes := 0
				for _, act := range append(w.member.Kube.(*kubefake.Clientset).Actions(), w.member.MCS.(*mcsfake.Clientset).Actions()...) {
					switch act.GetVerb() {
					case "create", "update", "patch", "delete":
						if act.GetResource().Resource != "events" {
							writes++
						}
					}
				}
				cancel()
				<-done
				_ = a
				scale := float64(size.services*size.endpoints) / 10000 * (1 << 20)
				per10k, inuse10k := float64(after-before)/scale, float64(afterInuse-beforeInuse)/scale
				b.ReportMetric(per10k, "MiB/10k-endpoints")
				b.ReportMetric(inuse10k, "MiB-inuse/10k-endpoints")
				b.ReportMetric(resync.Seconds(), "s/resync")
				b.Logf("heap %.1f MiB (%.1f MiB per 10k endpoints), resync %s, %d writes to the member",
					float64(after-before)/(1<<20), per10k, resync.Round(time.Millisecond), writes)
			}
		})
	}
}
