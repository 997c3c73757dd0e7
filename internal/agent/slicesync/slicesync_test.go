package slicesync

import (
	"context"
	"strings"
	"testing"

	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/utils/ptr"

	"github.com/strait-io/strait/internal/agent/patch"
)

func slice(name string, addrs ...string) *discoveryv1.EndpointSlice {
	s := &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns", Labels: map[string]string{"a": "b"}},
		AddressType: discoveryv1.AddressTypeIPv4}
	for _, a := range addrs {
		s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{Addresses: []string{a}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}})
	}
	return s
}

func TestSyncWritesOnlyDifferences(t *testing.T) {
	ctx := context.Background()
	keep, change, drop := slice("keep", "10.0.0.1"), slice("change", "10.0.0.2"), slice("drop", "10.0.0.3")
	cs := fake.NewClientset(keep, change, drop)
	client := cs.DiscoveryV1().EndpointSlices("ns")
	have := []*discoveryv1.EndpointSlice{keep, change, drop}
	want := []*discoveryv1.EndpointSlice{slice("keep", "10.0.0.1"), slice("change", "10.0.0.9"), slice("new", "10.0.0.4")}
	cs.ClearActions()
	if err := Sync(ctx, client, have, want); err != nil {
		t.Fatal(err)
	}
	verbs := map[string]int{}
	for _, a := range cs.Actions() {
		verbs[a.GetVerb()]++
	}
	if verbs["create"] != 1 || verbs["patch"] != 1 || verbs["delete"] != 1 || len(cs.Actions()) != 3 {
		t.Errorf("actions %v; want exactly one create, patch and delete", verbs)
	}
	list, _ := client.List(ctx, metav1.ListOptions{})
	got := map[string]string{}
	for _, s := range list.Items {
		got[s.Name] = s.Endpoints[0].Addresses[0]
	}
	if len(got) != 3 || got["change"] != "10.0.0.9" || got["new"] != "10.0.0.4" || got["keep"] != "10.0.0.1" {
		t.Errorf("slices after Sync: %v", got)
	}
	// A second Sync with the same desired state writes nothing.
	cs.ClearActions()
	var now []*discoveryv1.EndpointSlice
	for i := range list.Items {
		now = append(now, &list.Items[i])
	}
	if err := Sync(ctx, client, now, want); err != nil {
		t.Fatal(err)
	}
	if n := len(cs.Actions()); n != 0 {
		t.Errorf("a repeated Sync made %d writes; want none", n)
	}
}

func TestMirrorDropsNodeNamesAndSkips(t *testing.T) {
	a := slice("a", "10.0.0.2", "10.0.0.1")
	a.Endpoints[0].NodeName = ptr.To("node-1")
	a.Ports = []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To(int32(80))}}
	skipped := slice("ours", "10.9.9.9")
	out := Mirror([]*discoveryv1.EndpointSlice{a, skipped}, func(s *discoveryv1.EndpointSlice) bool { return s.Name == "ours" },
		func(discoveryv1.AddressType) metav1.ObjectMeta { return metav1.ObjectMeta{Name: "mirror"} })
	if len(out) != 1 || len(out[0].Endpoints) != 2 {
		t.Fatalf("mirror = %+v", out)
	}
	if out[0].Endpoints[0].Addresses[0] != "10.0.0.1" || out[0].Endpoints[1].NodeName != nil {
		t.Errorf("endpoints not sorted or node name kept: %+v", out[0].Endpoints)
	}
	if a.Endpoints[0].NodeName == nil {
		t.Error("Mirror modified its input")
	}
}

func TestSlimSliceComparesByDigest(t *testing.T) {
	have := slice("s", "10.0.0.1", "10.0.0.2")
	have.Ports = []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To(int32(80))}}
	have.Endpoints[1].Conditions.Ready = ptr.To(false)
	want := have.DeepCopy()
	Slim(have)
	if have.Endpoints != nil || have.Ports != nil {
		t.Fatalf("Slim kept endpoints %v and ports %v", have.Endpoints, have.Ports)
	}
	if n := ReadyEndpoints(have); n != 1 {
		t.Errorf("a slim slice has %d ready endpoints, want 1 (of 2, one not ready)", n)
	}
	if !Same(have, want) {
		t.Error("a slim slice differs from the slice it was")
	}
	emptyLists := want.DeepCopy()
	emptyLists.Endpoints[0].DeprecatedTopology = map[string]string{}
	if !Same(have, emptyLists) {
		t.Error("an empty map counts as a difference")
	}
	changed := want.DeepCopy()
	changed.Endpoints[1].Conditions.Ready = ptr.To(true)
	if Same(have, changed) {
		t.Error("a changed endpoint condition went unnoticed")
	}
	relabelled := want.DeepCopy()
	relabelled.Labels = map[string]string{"a": "c"}
	if Same(have, relabelled) {
		t.Error("a changed label went unnoticed")
	}
	// What is patched from a slim slice carries every endpoint and no digest.
	p, err := patch.Merge(Fields(have), Fields(changed))
	if err != nil {
		t.Fatal(err)
	}
	if s := string(p); strings.Contains(s, annotationDigest) || strings.Contains(s, annotationReady) || !strings.Contains(s, "10.0.0.1") || !strings.Contains(s, "10.0.0.2") {
		t.Errorf("patch from a slim slice: %s", s)
	}
}
