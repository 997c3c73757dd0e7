package clusterset_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/strait-io/strait/internal/clusterset"
	"github.com/strait-io/strait/internal/lab/labtest"
)

const (
	mcsGroup = "multicluster.x-k8s.io"
	broker   = "cluster01"
)

var (
	crdGVR           = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
	serviceImportGVR = schema.GroupVersionResource{Group: mcsGroup, Version: "v1beta1", Resource: "serviceimports"}
)

// TestMembershipOnLab runs join and leave against one lab of three real clusters, shared by
// its steps; cluster01 is the broker and a member. The steps depend on each other, so the
// first failure ends the test.
func TestMembershipOnLab(t *testing.T) {
	lab := labtest.Start(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	e := &labEnv{lab: lab, ctx: ctx}
	brokerCS := lab.Client(broker)
	step := func(name string, f func(t *testing.T)) {
		if !t.Run(name, f) {
			t.FailNow()
		}
	}

	// The lab may join its clusters itself when it starts; join is idempotent either way.
	step("every cluster joins, the broker included", func(t *testing.T) {
		for _, c := range lab.Names() {
			if _, err := e.join(c, nil); err != nil {
				t.Fatalf("joining %s: %v", c, err)
			}
		}
		for _, c := range lab.Names() {
			e.assertMember(t, c)
		}
	})

	step("re-running join changes nothing", func(t *testing.T) {
		before := e.snapshot(t)
		for _, c := range lab.Names() {
			res, err := e.join(c, nil)
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Actions) != 0 {
				t.Errorf("re-join of %s: %q", c, actionStrings(res.Actions))
			}
		}
		e.assertUnchanged(t, before, "re-running join")
	})

	step("the broker lists every member", func(t *testing.T) {
		e.assertMembers(t, brokerCS, "cluster01", "cluster02", "cluster03")
	})

	step("a member's broker credential writes only its own namespace", func(t *testing.T) {
		cfg, err := clusterset.BrokerRESTConfig(ctx, lab.Client("cluster02"))
		if err != nil {
			t.Fatal(err)
		}
		kube := kubernetes.NewForConfigOrDie(cfg)
		dyn := dynamic.NewForConfigOrDie(cfg)
		own, other := clusterset.MemberNamespace("cluster02"), clusterset.MemberNamespace("cluster03")
		expect := func(what string, err error, forbidden bool) {
			t.Helper()
			switch {
			case forbidden && !apierrors.IsForbidden(err):
				t.Errorf("%s: %v, want Forbidden", what, err)
			case !forbidden && err != nil:
				t.Errorf("%s: %v", what, err)
			}
		}
		_, err = dyn.Resource(serviceImportGVR).Namespace(own).Create(ctx, serviceImport("rbac-test"), metav1.CreateOptions{})
		expect("creating a ServiceImport in its own namespace", err, false)
		_, err = dyn.Resource(serviceImportGVR).Namespace(other).Create(ctx, serviceImport("rbac-test"), metav1.CreateOptions{})
		expect("creating a ServiceImport in another member's namespace", err, true)
		_, err = kube.DiscoveryV1().EndpointSlices(own).Create(ctx, endpointSlice("rbac-test"), metav1.CreateOptions{})
		expect("creating an EndpointSlice in its own namespace", err, false)
		_, err = kube.DiscoveryV1().EndpointSlices(other).Create(ctx, endpointSlice("rbac-test"), metav1.CreateOptions{})
		expect("creating an EndpointSlice in another member's namespace", err, true)
		_, err = kube.CoordinationV1().Leases(own).Create(ctx, lease("rbac-test"), metav1.CreateOptions{})
		expect("creating a Lease in its own namespace", err, false)
		_, err = kube.CoordinationV1().Leases(other).Create(ctx, lease("rbac-test"), metav1.CreateOptions{})
		expect("creating a Lease in another member's namespace", err, true)
		_, err = kube.CoreV1().Events(own).Create(ctx, event(own), metav1.CreateOptions{})
		expect("creating an Event in its own namespace", err, false)

		// A record of cluster03, written with cluster03's own credential.
		cfg3, err := clusterset.BrokerRESTConfig(ctx, lab.Client("cluster03"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := dynamic.NewForConfigOrDie(cfg3).Resource(serviceImportGVR).Namespace(other).Create(ctx, serviceImport("rbac-test"), metav1.CreateOptions{}); err != nil {
			t.Fatalf("cluster03 writing its own record: %v", err)
		}
		err = dyn.Resource(serviceImportGVR).Namespace(other).Delete(ctx, "rbac-test", metav1.DeleteOptions{})
		expect("deleting another member's ServiceImport", err, true)
		if _, err = dyn.Resource(serviceImportGVR).Namespace(other).Get(ctx, "rbac-test", metav1.GetOptions{}); err != nil {
			t.Errorf("reading another member's ServiceImport: %v", err)
		}
		all, err := dyn.Resource(serviceImportGVR).List(ctx, metav1.ListOptions{})
		expect("listing ServiceImports in all namespaces", err, false)
		if err == nil && !slices.Contains(namespacesOf(all.Items, "rbac-test"), other) {
			t.Errorf("listing ServiceImports in all namespaces does not show cluster03's record: %v", namespacesOf(all.Items, "rbac-test"))
		}
		_, err = kube.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
		expect("listing namespaces", err, false)
		_, err = kube.CoordinationV1().Leases(other).List(ctx, metav1.ListOptions{})
		expect("listing another member's Leases", err, false)
		_, err = kube.DiscoveryV1().EndpointSlices(metav1.NamespaceAll).List(ctx, metav1.ListOptions{})
		expect("listing EndpointSlices in all namespaces", err, false)
		e.assertMembers(t, kube, "cluster01", "cluster02", "cluster03")

		cm, err := kube.CoreV1().ConfigMaps(own).Get(ctx, clusterset.MembershipConfigMap, metav1.GetOptions{})
		expect("reading its own membership", err, false)
		if err == nil {
			cm.Data[clusterset.KeyPodCIDRs] = "10.0.0.0/8"
			_, err = kube.CoreV1().ConfigMaps(own).Update(ctx, cm, metav1.UpdateOptions{})
			expect("changing its own membership", err, true)
		}
		_, err = kube.CoreV1().Secrets(own).List(ctx, metav1.ListOptions{})
		expect("listing Secrets", err, true)
		_, err = kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "strait-member-evil"}}, metav1.CreateOptions{})
		expect("creating a namespace", err, true)
		_, err = kube.RbacV1().RoleBindings(own).Create(ctx, &rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: "escalate"},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "cluster-admin"},
			Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: clusterset.AgentServiceAccount, Namespace: own}},
		}, metav1.CreateOptions{})
		expect("creating a RoleBinding", err, true)
		// Clean up cluster02's own test records with its own credential.
		expect("deleting its own ServiceImport", dyn.Resource(serviceImportGVR).Namespace(own).Delete(ctx, "rbac-test", metav1.DeleteOptions{}), false)
		expect("deleting its own EndpointSlice", kube.DiscoveryV1().EndpointSlices(own).Delete(ctx, "rbac-test", metav1.DeleteOptions{}), false)
		expect("deleting its own Lease", kube.CoordinationV1().Leases(own).Delete(ctx, "rbac-test", metav1.DeleteOptions{}), false)
	})

	step("leave removes the member from the broker, with its records, and its credential", func(t *testing.T) {
		res, err := e.leave("cluster03")
		if err != nil {
			t.Fatal(err)
		}
		want := []string{
			"deleted ClusterRoleBinding strait-member-reader-cluster03 in cluster01",
			"deleted Namespace strait-member-cluster03 in cluster01",
			"deleted Secret strait-system/strait-broker in cluster03",
			"deleted ClusterProperty cluster.clusterset.k8s.io in cluster03",
			"deleted ClusterProperty clusterset.k8s.io in cluster03",
		}
		if got := actionStrings(res.Actions); !slices.Equal(got, want) {
			t.Errorf("actions\n  %q\nwant\n  %q", got, want)
		}
		if _, err := brokerCS.CoreV1().Namespaces().Get(ctx, clusterset.MemberNamespace("cluster03"), metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("broker namespace of cluster03: %v, want it gone", err)
		}
		all, err := e.dyn(t, broker).Resource(serviceImportGVR).List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if slices.Contains(namespacesOf(all.Items, "rbac-test"), clusterset.MemberNamespace("cluster03")) {
			t.Error("cluster03's record is still on the broker")
		}
		if _, err := brokerCS.RbacV1().ClusterRoleBindings().Get(ctx, "strait-member-reader-cluster03", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("reader binding of cluster03: %v, want it gone", err)
		}
		if _, err := clusterset.BrokerRESTConfig(ctx, lab.Client("cluster03")); err == nil {
			t.Error("cluster03 still has a broker credential")
		}
		if _, err := clusterset.LocalClusterID(ctx, e.dyn(t, "cluster03")); !errors.Is(err, clusterset.ErrNoClusterID) {
			t.Errorf("cluster03's cluster ID after leave: %v", err)
		}
		for _, name := range []string{"clusterproperties.about.k8s.io", "serviceimports.multicluster.x-k8s.io"} {
			if _, err := e.dyn(t, "cluster03").Resource(crdGVR).Get(ctx, name, metav1.GetOptions{}); err != nil {
				t.Errorf("CRD %s must stay in cluster03: %v", name, err)
			}
		}
		if _, err := brokerCS.RbacV1().ClusterRoles().Get(ctx, clusterset.MemberReaderClusterRole, metav1.GetOptions{}); err != nil {
			t.Errorf("the reader role is still used by the other members: %v", err)
		}
		e.assertMembers(t, brokerCS, "cluster01", "cluster02")
	})

	step("leave of a non-member is a clear error", func(t *testing.T) {
		before := e.snapshot(t)
		_, err := e.leave("cluster03")
		if !errors.Is(err, clusterset.ErrNotMember) || !strings.Contains(err.Error(), "cluster03 is not a member of the clusterset on cluster01") {
			t.Fatalf("error %v", err)
		}
		e.assertUnchanged(t, before, "leave of a non-member")
	})

	step("a bad cluster ID is refused before anything is written", func(t *testing.T) {
		before := e.snapshot(t)
		_, err := e.join("cluster03", func(o *clusterset.JoinOptions) { o.ClusterID = "Foo_1" })
		if err == nil || !strings.Contains(err.Error(), `cluster ID "Foo_1" is not a DNS-1123 label: a lowercase RFC 1123 label must consist of lower case alphanumeric characters`) {
			t.Fatalf("error %v", err)
		}
		e.assertUnchanged(t, before, "a join with a bad ID")
	})

	step("another cluster cannot take a member's ID, and nothing is written", func(t *testing.T) {
		before := e.snapshot(t)
		_, err := e.join("cluster03", func(o *clusterset.JoinOptions) { o.ClusterID = "cluster02" })
		if !errors.Is(err, clusterset.ErrIDTaken) || !strings.Contains(err.Error(), `cluster ID "cluster02" is already used by another cluster of the clusterset`) {
			t.Fatalf("error %v", err)
		}
		e.assertUnchanged(t, before, "a join with a taken ID")
	})

	step("overlapping CIDRs are refused, and nothing is written", func(t *testing.T) {
		before := e.snapshot(t)
		_, err := e.join("cluster03", func(o *clusterset.JoinOptions) { o.PodCIDRs = []string{"10.2.0.0/16"} })
		want := "pod CIDR 10.2.0.0/16 of cluster03 overlaps 10.2.0.0/16 of cluster02; pass --allow-overlapping-cidrs if your data plane translates addresses"
		if err == nil || err.Error() != want {
			t.Fatalf("error %v\nwant %s", err, want)
		}
		e.assertUnchanged(t, before, "a join with overlapping CIDRs")
	})

	step("a join that fails midway removes what it created, and only that", func(t *testing.T) {
		before := e.snapshot(t)
		injected := errors.New("injected failure")
		_, err := e.join("cluster03", func(o *clusterset.JoinOptions) {
			clusterset.SetBeforeStep(o, func(step string) error {
				if step == "broker-membership" {
					return injected
				}
				return nil
			})
		})
		if !errors.Is(err, injected) || !strings.Contains(err.Error(), "removed the") {
			t.Fatalf("error %v", err)
		}
		e.assertUnchanged(t, before, "a failed join")
	})

	step("overlap is allowed when asked for, and joining again updates the record", func(t *testing.T) {
		res, err := e.join("cluster03", func(o *clusterset.JoinOptions) {
			o.PodCIDRs = []string{"10.2.0.0/16"}
			o.AllowOverlappingCIDRs = true
		})
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{
			"created Namespace strait-member-cluster03 in cluster01",
			"created ServiceAccount strait-member-cluster03/strait-agent in cluster01",
			"created ClusterRoleBinding strait-member-reader-cluster03 in cluster01",
			"created Secret strait-system/strait-broker in cluster03",
			"created ClusterProperty cluster.clusterset.k8s.io in cluster03",
			"created ConfigMap strait-member-cluster03/strait-membership in cluster01",
		} {
			if !slices.Contains(actionStrings(res.Actions), want) {
				t.Errorf("actions lack %q: %q", want, actionStrings(res.Actions))
			}
		}
		res, err = e.join("cluster03", nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := actionStrings(res.Actions); !slices.Equal(got, []string{"updated ConfigMap strait-member-cluster03/strait-membership in cluster01"}) {
			t.Errorf("joining again with the real CIDRs: %q", got)
		}
		e.assertMember(t, "cluster03")
		e.assertMembers(t, brokerCS, "cluster01", "cluster02", "cluster03")
	})
}

// labEnv is the lab shared by the steps of TestMembershipOnLab.
type labEnv struct {
	lab *labtest.Lab
	ctx context.Context
}

func (e *labEnv) join(member string, mutate func(*clusterset.JoinOptions)) (*clusterset.JoinResult, error) {
	o := clusterset.JoinOptions{
		Member: e.lab.RESTConfig(member), Broker: e.lab.RESTConfig(broker),
		MemberName: member, BrokerName: broker, Timeout: time.Minute,
	}
	if mutate != nil {
		mutate(&o)
	}
	return clusterset.Join(e.ctx, o)
}

func (e *labEnv) leave(member string) (*clusterset.LeaveResult, error) {
	return clusterset.Leave(e.ctx, clusterset.LeaveOptions{
		Member: e.lab.RESTConfig(member), Broker: e.lab.RESTConfig(broker),
		MemberName: member, BrokerName: broker, Timeout: time.Minute,
	})
}

func (e *labEnv) dyn(t *testing.T, cluster string) dynamic.Interface {
	t.Helper()
	d, err := dynamic.NewForConfig(e.lab.RESTConfig(cluster))
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// assertMember checks what join must have written for a member: the CRDs and About API
// properties in the member, a working broker credential, and on the broker its namespace,
// service account, token, RBAC and membership record.
func (e *labEnv) assertMember(t *testing.T, id string) {
	t.Helper()
	ctx := e.ctx
	memberDyn := e.dyn(t, id)
	for _, name := range []string{"clusterproperties.about.k8s.io", "serviceexports.multicluster.x-k8s.io", "serviceimports.multicluster.x-k8s.io"} {
		obj, err := memberDyn.Resource(crdGVR).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Errorf("%s: CRD %s: %v", id, name, err)
			continue
		}
		if missing := clusterset.MissingVersions(obj, []string{"v1alpha1"}); len(missing) > 0 {
			t.Errorf("%s: CRD %s does not serve %v", id, name, missing)
		}
	}
	// Stock CoreDNS lists ServiceImports through v1alpha1.
	if _, err := memberDyn.Resource(schema.GroupVersionResource{Group: mcsGroup, Version: "v1alpha1", Resource: "serviceimports"}).List(ctx, metav1.ListOptions{}); err != nil {
		t.Errorf("%s: ServiceImports v1alpha1 are not served: %v", id, err)
	}
	if got, err := clusterset.LocalClusterID(ctx, memberDyn); err != nil || got != id {
		t.Errorf("%s: LocalClusterID = %q, %v", id, got, err)
	}
	if p, err := memberDyn.Resource(clusterset.ClusterPropertyGVR).Get(ctx, clusterset.ClusterSetProperty, metav1.GetOptions{}); err != nil {
		t.Errorf("%s: ClusterProperty %s: %v", id, clusterset.ClusterSetProperty, err)
	} else if v, _, _ := unstructured.NestedString(p.Object, "spec", "value"); v != clusterset.DefaultClusterSet {
		t.Errorf("%s: ClusterProperty %s = %q", id, clusterset.ClusterSetProperty, v)
	}

	b := e.lab.Client(broker)
	ns := clusterset.MemberNamespace(id)
	nsObj, err := b.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("broker namespace %s: %v", ns, err)
	}
	if nsObj.Labels[clusterset.ManagedByLabel] != clusterset.ManagedByValue || nsObj.Labels[clusterset.ClusterIDLabel] != id {
		t.Errorf("labels of %s: %v", ns, nsObj.Labels)
	}
	if _, err := b.CoreV1().ServiceAccounts(ns).Get(ctx, clusterset.AgentServiceAccount, metav1.GetOptions{}); err != nil {
		t.Errorf("service account: %v", err)
	}
	if s, err := b.CoreV1().Secrets(ns).Get(ctx, clusterset.AgentTokenSecret, metav1.GetOptions{}); err != nil || len(s.Data[corev1.ServiceAccountTokenKey]) == 0 {
		t.Errorf("token secret: %v", err)
	}
	if _, err := b.RbacV1().Roles(ns).Get(ctx, clusterset.MemberRole, metav1.GetOptions{}); err != nil {
		t.Errorf("role: %v", err)
	}
	if _, err := b.RbacV1().RoleBindings(ns).Get(ctx, clusterset.MemberRole, metav1.GetOptions{}); err != nil {
		t.Errorf("role binding: %v", err)
	}
	if crb, err := b.RbacV1().ClusterRoleBindings().Get(ctx, clusterset.MemberReaderBinding(id), metav1.GetOptions{}); err != nil || crb.RoleRef.Name != clusterset.MemberReaderClusterRole {
		t.Errorf("reader binding: %v", err)
	}
	cm, err := b.CoreV1().ConfigMaps(ns).Get(ctx, clusterset.MembershipConfigMap, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("membership: %v", err)
	}
	plan := e.lab.Cluster(id)
	kubeSystem, err := e.lab.Client(id).CoreV1().Namespaces().Get(ctx, metav1.NamespaceSystem, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		clusterset.KeyClusterID: id, clusterset.KeyClusterUID: string(kubeSystem.UID), clusterset.KeyClusterSet: clusterset.DefaultClusterSet,
		clusterset.KeyRegion: plan.Region, clusterset.KeyZone: plan.Zone,
		clusterset.KeyPodCIDRs: plan.PodCIDR, clusterset.KeyServiceCIDRs: plan.ServiceCIDR,
	}
	for k, v := range want {
		if cm.Data[k] != v {
			t.Errorf("%s membership %s = %q, want %q", id, k, cm.Data[k], v)
		}
	}
	if at, err := time.Parse(time.RFC3339, cm.Data[clusterset.KeyJoinedAt]); err != nil || time.Since(at) > time.Hour {
		t.Errorf("%s joinedAt %q", id, cm.Data[clusterset.KeyJoinedAt])
	}

	// The stored credential reaches the broker as the member's service account.
	cfg, err := clusterset.BrokerRESTConfig(ctx, e.lab.Client(id))
	if err != nil {
		t.Fatal(err)
	}
	review, err := kubernetes.NewForConfigOrDie(cfg).AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("broker credential of %s: %v", id, err)
	}
	if u := review.Status.UserInfo.Username; u != "system:serviceaccount:"+ns+":"+clusterset.AgentServiceAccount {
		t.Errorf("broker credential of %s authenticates as %s", id, u)
	}
}

// assertMembers checks ReadMembers through client against the lab's plan.
func (e *labEnv) assertMembers(t *testing.T, client kubernetes.Interface, ids ...string) {
	t.Helper()
	members, err := clusterset.ReadMembers(e.ctx, client)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range members {
		got = append(got, m.ID)
		plan := e.lab.Cluster(m.ID)
		if !slices.Equal(m.PodCIDRs, []string{plan.PodCIDR}) || !slices.Equal(m.ServiceCIDRs, []string{plan.ServiceCIDR}) ||
			m.Region != plan.Region || m.Zone != plan.Zone || m.Namespace != clusterset.MemberNamespace(m.ID) || m.JoinedAt.IsZero() ||
			m.ClusterSet != clusterset.DefaultClusterSet || m.ClusterUID == "" {
			t.Errorf("member %+v, plan %+v", m, plan)
		}
	}
	if !slices.Equal(got, ids) {
		t.Errorf("members %v, want %v", got, ids)
	}
}

// snapshot records every object join or leave may write, with its resourceVersion, in every
// cluster of the lab: two equal snapshots mean nothing was written in between.
func (e *labEnv) snapshot(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	managed := metav1.ListOptions{LabelSelector: clusterset.ManagedByLabel + "=" + clusterset.ManagedByValue}
	for _, c := range e.lab.Names() {
		cs := e.lab.Client(c)
		dyn := e.dyn(t, c)
		lists := map[string]func() (runtime.Object, error){
			"Namespace":          func() (runtime.Object, error) { return cs.CoreV1().Namespaces().List(e.ctx, metav1.ListOptions{}) },
			"Secret":             func() (runtime.Object, error) { return cs.CoreV1().Secrets("").List(e.ctx, managed) },
			"ConfigMap":          func() (runtime.Object, error) { return cs.CoreV1().ConfigMaps("").List(e.ctx, managed) },
			"ServiceAccount":     func() (runtime.Object, error) { return cs.CoreV1().ServiceAccounts("").List(e.ctx, managed) },
			"Role":               func() (runtime.Object, error) { return cs.RbacV1().Roles("").List(e.ctx, managed) },
			"RoleBinding":        func() (runtime.Object, error) { return cs.RbacV1().RoleBindings("").List(e.ctx, managed) },
			"ClusterRole":        func() (runtime.Object, error) { return cs.RbacV1().ClusterRoles().List(e.ctx, managed) },
			"ClusterRoleBinding": func() (runtime.Object, error) { return cs.RbacV1().ClusterRoleBindings().List(e.ctx, managed) },
			"CustomResourceDefinition": func() (runtime.Object, error) {
				return dyn.Resource(crdGVR).List(e.ctx, metav1.ListOptions{})
			},
			"ClusterProperty": func() (runtime.Object, error) {
				l, err := dyn.Resource(clusterset.ClusterPropertyGVR).List(e.ctx, metav1.ListOptions{})
				if apierrors.IsNotFound(err) {
					return &unstructured.UnstructuredList{}, nil
				}
				return l, err
			},
		}
		for kind, list := range lists {
			l, err := list()
			if err != nil {
				t.Fatalf("%s: listing %s: %v", c, kind, err)
			}
			items, err := apimeta.ExtractList(l)
			if err != nil {
				t.Fatal(err)
			}
			for _, item := range items {
				o, err := apimeta.Accessor(item)
				if err != nil {
					t.Fatal(err)
				}
				version := o.GetResourceVersion()
				if kind == "Namespace" {
					// Namespaces are compared by existence: the namespace controller
					// updates their status on its own.
					version = ""
				}
				out[fmt.Sprintf("%s %s %s/%s", c, kind, o.GetNamespace(), o.GetName())] = version
			}
		}
	}
	return out
}

// assertUnchanged waits until the clusters look as in before (namespace and CRD deletions
// finish asynchronously) and fails with the difference otherwise.
func (e *labEnv) assertUnchanged(t *testing.T, before map[string]string, what string) {
	t.Helper()
	var diff []string
	err := wait.PollUntilContextTimeout(e.ctx, 200*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
		diff = diffSnapshots(before, e.snapshot(t))
		return len(diff) == 0, nil
	})
	if err != nil {
		t.Fatalf("%s changed the clusters:\n  %s", what, strings.Join(diff, "\n  "))
	}
}

func diffSnapshots(a, b map[string]string) []string {
	var diff []string
	for _, k := range slices.Sorted(maps.Keys(a)) {
		if v, ok := b[k]; !ok {
			diff = append(diff, "removed "+k)
		} else if v != a[k] {
			diff = append(diff, fmt.Sprintf("changed %s (resourceVersion %s -> %s)", k, a[k], v))
		}
	}
	for _, k := range slices.Sorted(maps.Keys(b)) {
		if _, ok := a[k]; !ok {
			diff = append(diff, "added "+k)
		}
	}
	return diff
}

func actionStrings(actions []clusterset.Action) []string {
	out := make([]string, 0, len(actions))
	for _, a := range actions {
		out = append(out, a.String())
	}
	return out
}

func namespacesOf(items []unstructured.Unstructured, name string) []string {
	var out []string
	for _, it := range items {
		if it.GetName() == name {
			out = append(out, it.GetNamespace())
		}
	}
	return out
}

func serviceImport(name string) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": mcsGroup + "/v1beta1",
		"kind":       "ServiceImport",
		"metadata":   map[string]any{"name": name},
		"spec": map[string]any{
			"type":  "ClusterSetIP",
			"ports": []any{map[string]any{"port": int64(80), "protocol": "TCP"}},
		},
	}}
}

func endpointSlice(name string) *discoveryv1.EndpointSlice {
	return &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Name: name}, AddressType: discoveryv1.AddressTypeIPv4}
}

func lease(name string) *coordinationv1.Lease {
	holder := "test"
	return &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: coordinationv1.LeaseSpec{HolderIdentity: &holder}}
}

func event(ns string) *corev1.Event {
	return &corev1.Event{
		ObjectMeta:     metav1.ObjectMeta{GenerateName: "rbac-test-"},
		InvolvedObject: corev1.ObjectReference{Kind: "Lease", Namespace: ns, Name: "rbac-test"},
		Reason:         "Test", Message: "a member writes an event", Type: corev1.EventTypeNormal,
	}
}
