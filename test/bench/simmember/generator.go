package simmember

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	discoveryclient "k8s.io/client-go/kubernetes/typed/discovery/v1"
	mcsclient "sigs.k8s.io/mcs-api/pkg/client/clientset/versioned"

	"github.com/strait-io/strait/internal/agent/heartbeat"
	"github.com/strait-io/strait/internal/agent/slicesync"
	"github.com/strait-io/strait/internal/clusterset"
	"github.com/strait-io/strait/internal/liveness"
)

// Generator writes the simulated members' objects to a broker with an admin client (the
// members' own credentials would only add token requests). It is safe for concurrent use;
// changes to one export are serialized, as the exporter's work queue serializes them.
type Generator struct {
	Broker    kubernetes.Interface
	BrokerMCS mcsclient.Interface
	Spec      Spec
	// HeartbeatInterval is how often leases are renewed (the agent's default when zero).
	HeartbeatInterval time.Duration

	once    sync.Once
	members []*member
}

type member struct {
	i     int
	id    string
	alive atomic.Bool
	svcs  map[int]*export // fixed at init
}

// export is what the simulated member knows about one of its exports: the version of
// each endpoint slot (a change replaces the slot's pod) and its slices as the broker
// returned them, the simulated exporter's cache.
type export struct {
	mu       sync.Mutex
	versions []uint32
	slices   []*discoveryv1.EndpointSlice
}

func (g *Generator) init() {
	g.once.Do(func() {
		g.members = make([]*member, g.Spec.Members)
		for i := range g.members {
			m := &member{i: i, id: MemberID(i), svcs: map[int]*export{}}
			m.alive.Store(true)
			for _, s := range g.Spec.Exports(i) {
				m.svcs[s] = &export{versions: make([]uint32, g.Spec.Endpoints)}
			}
			g.members[i] = m
		}
	})
}

func (g *Generator) interval() time.Duration {
	if g.HeartbeatInterval > 0 {
		return g.HeartbeatInterval
	}
	return liveness.DefaultHeartbeatInterval
}

// Register writes member i's registration as join does (registry ConfigMap last), then
// its first heartbeat, as its agent would once started.
func (g *Generator) Register(ctx context.Context, i int) error {
	g.init()
	r := clusterset.BrokerRegistration(Member(i))
	core := g.Broker.CoreV1()
	if _, err := core.Namespaces().Create(ctx, r.Namespace, metav1.CreateOptions{}); ignoreExists(err) != nil {
		return err
	}
	if _, err := g.Broker.RbacV1().Roles(r.ReaderRole.Namespace).Create(ctx, r.ReaderRole, metav1.CreateOptions{}); ignoreExists(err) != nil {
		return err
	}
	if _, err := g.Broker.RbacV1().RoleBindings(r.ReaderBinding.Namespace).Create(ctx, r.ReaderBinding, metav1.CreateOptions{}); ignoreExists(err) != nil {
		return err
	}
	r.Registry.Data[clusterset.KeyJoinedAt] = time.Now().UTC().Format(time.RFC3339)
	if _, err := core.ConfigMaps(clusterset.ClustersetNamespace).Create(ctx, r.Registry, metav1.CreateOptions{}); ignoreExists(err) != nil {
		return err
	}
	return g.Renew(ctx, i)
}

func ignoreExists(err error) error {
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	return err
}

// Renew renews member i's heartbeat Lease once, with the heartbeat's own code.
func (g *Generator) Renew(ctx context.Context, i int) error {
	id := MemberID(i)
	return heartbeat.Renew(ctx, g.Broker, clusterset.MemberNamespace(id), id, g.interval())
}

// RunHeartbeats renews the lease of every living member once per interval, spread over
// the interval, until ctx ends. Errors are counted, not fatal: the broker may be busy.
func (g *Generator) RunHeartbeats(ctx context.Context, errs *atomic.Int64) {
	g.init()
	step := g.interval() / time.Duration(max(1, len(g.members)))
	t := time.NewTicker(step)
	defer t.Stop()
	for n := 0; ; n++ {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		m := g.members[n%len(g.members)]
		if !m.alive.Load() {
			continue
		}
		go func() {
			rctx, cancel := context.WithTimeout(ctx, g.interval())
			defer cancel()
			if err := g.Renew(rctx, m.i); err != nil && ctx.Err() == nil && errs != nil {
				errs.Add(1)
			}
		}()
	}
}

// Kill stops renewing member i's lease: the member died (its records stay, as a dead
// agent's do). Revive starts again.
func (g *Generator) Kill(i int)   { g.init(); g.members[i].alive.Store(false) }
func (g *Generator) Revive(i int) { g.init(); g.members[i].alive.Store(true) }

// Alive reports whether member i renews its lease.
func (g *Generator) Alive(i int) bool { g.init(); return g.members[i].alive.Load() }

// Publish writes member i's records of every Service it exports, as its exporter does on
// its first reconcile of each.
func (g *Generator) Publish(ctx context.Context, i int) error {
	g.init()
	for s := range g.members[i].svcs {
		if err := g.PublishExport(ctx, i, s); err != nil {
			return err
		}
	}
	return nil
}

// PublishExport writes member i's records of Service s.
func (g *Generator) PublishExport(ctx context.Context, i, s int) error {
	g.init()
	m := g.members[i]
	if _, ok := m.svcs[s]; !ok {
		return fmt.Errorf("member %s does not export %s", m.id, ServiceName(s))
	}
	_, err := g.write(ctx, m, s, false)
	return err
}

// Change replaces the pod of one endpoint slot of member i's export of Service s (the
// slots are changed in turn) and writes the record slice as the exporter would. It
// returns the new pod's address, which the importing member's slice will show.
func (g *Generator) Change(ctx context.Context, i, s int) (string, error) {
	g.init()
	m := g.members[i]
	if _, ok := m.svcs[s]; !ok {
		return "", fmt.Errorf("member %s does not export %s", m.id, ServiceName(s))
	}
	return g.write(ctx, m, s, true)
}

// write syncs the member's records of Service s, after replacing the pod of the next
// slot if change is set (under the export's lock, so two changes never pick one slot).
func (g *Generator) write(ctx context.Context, m *member, s int, change bool) (string, error) {
	e := m.svcs[s]
	e.mu.Lock()
	defer e.mu.Unlock()
	slot := -1
	if change {
		var total uint32
		for _, v := range e.versions {
			total += v
		}
		slot = int(total) % len(e.versions)
		e.versions[slot]++
	}
	ns, name := g.Spec.Namespace, ServiceName(s)
	addrs := make([]string, len(e.versions))
	for ep, v := range e.versions {
		addrs[ep] = Address(m.i, len(e.versions), ep, v)
	}
	si, want := Records(m.id, Service(ns, name), ServiceExport(ns, name), []*discoveryv1.EndpointSlice{LocalSlice(ns, name, addrs)})
	if e.slices == nil {
		// The exporter's first reconcile: the ServiceImport record, then the slices.
		_, err := g.BrokerMCS.MulticlusterV1beta1().ServiceImports(si.Namespace).Create(ctx, si, metav1.CreateOptions{})
		if ignoreExists(err) != nil {
			return "", err
		}
	}
	rc := &recording{EndpointSliceInterface: g.Broker.DiscoveryV1().EndpointSlices(si.Namespace), last: map[string]*discoveryv1.EndpointSlice{}}
	if err := slicesync.Sync(ctx, rc, e.slices, want); err != nil {
		return "", err
	}
	e.slices = rc.merge(e.slices)
	if slot < 0 {
		return "", nil
	}
	return addrs[slot], nil
}

// recording is the broker's slice client, keeping what the broker returned so that the
// next sync starts from the current resourceVersion, as the exporter's informer cache
// would.
type recording struct {
	discoveryclient.EndpointSliceInterface
	last    map[string]*discoveryv1.EndpointSlice
	deleted []string
}

func (r *recording) Create(ctx context.Context, s *discoveryv1.EndpointSlice, o metav1.CreateOptions) (*discoveryv1.EndpointSlice, error) {
	out, err := r.EndpointSliceInterface.Create(ctx, s, o)
	if err == nil {
		r.last[out.Name] = out
	}
	return out, err
}

func (r *recording) Update(ctx context.Context, s *discoveryv1.EndpointSlice, o metav1.UpdateOptions) (*discoveryv1.EndpointSlice, error) {
	out, err := r.EndpointSliceInterface.Update(ctx, s, o)
	if err == nil {
		r.last[out.Name] = out
	}
	return out, err
}

func (r *recording) Delete(ctx context.Context, name string, o metav1.DeleteOptions) error {
	err := r.EndpointSliceInterface.Delete(ctx, name, o)
	if err == nil {
		r.deleted = append(r.deleted, name)
	}
	return err
}

func (r *recording) merge(have []*discoveryv1.EndpointSlice) []*discoveryv1.EndpointSlice {
	out := []*discoveryv1.EndpointSlice{}
	for _, h := range have {
		if n, ok := r.last[h.Name]; ok {
			out = append(out, n)
			delete(r.last, h.Name)
			continue
		}
		gone := false
		for _, d := range r.deleted {
			gone = gone || d == h.Name
		}
		if !gone {
			out = append(out, h)
		}
	}
	for _, n := range r.last {
		out = append(out, n)
	}
	return out
}
