package chart

import (
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/strait-io/strait/charts"
)

func appVersion(t *testing.T) string {
	t.Helper()
	data, err := charts.Strait.ReadFile("strait/Chart.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var meta struct {
		AppVersion string `json:"appVersion"`
	}
	if err := yaml.Unmarshal(data, &meta); err != nil {
		t.Fatal(err)
	}
	return meta.AppVersion
}

func render(t *testing.T, values map[string]any) []*unstructured.Unstructured {
	t.Helper()
	objs, err := Render(values, Namespace)
	if err != nil {
		t.Fatalf("Render(%v): %v", values, err)
	}
	return objs
}

func find(objs []*unstructured.Unstructured, kind, name string) *unstructured.Unstructured {
	for _, o := range objs {
		if o.GetKind() == kind && o.GetName() == name {
			return o
		}
	}
	return nil
}

func container(t *testing.T, d *unstructured.Unstructured) map[string]any {
	t.Helper()
	cs, _, _ := unstructured.NestedSlice(d.Object, "spec", "template", "spec", "containers")
	if len(cs) != 1 {
		t.Fatalf("%s has %d containers, want 1", d.GetName(), len(cs))
	}
	return cs[0].(map[string]any)
}

func args(t *testing.T, d *unstructured.Unstructured) []string {
	t.Helper()
	var out []string
	for _, a := range container(t, d)["args"].([]any) {
		out = append(out, a.(string))
	}
	return out
}

func TestDefaultsRunTheAgentOnly(t *testing.T) {
	objs := render(t, nil)
	d := find(objs, "Deployment", "strait-agent")
	if d == nil {
		t.Fatal("no Deployment strait-agent")
	}
	if d.GetNamespace() != "strait-system" {
		t.Errorf("agent namespace %q, want strait-system", d.GetNamespace())
	}
	if r, _, _ := unstructured.NestedInt64(d.Object, "spec", "replicas"); r != 2 {
		t.Errorf("agent replicas %d, want 2", r)
	}
	if got, want := container(t, d)["image"], "strait.io/strait:"+appVersion(t); got != want {
		t.Errorf("agent image %v, want %s", got, want)
	}
	want := []string{"agent", "--metrics-bind-address=:9090", "--health-probe-bind-address=:8081", "--leader-elect=true"}
	if got := args(t, d); !slices.Equal(got, want) {
		t.Errorf("agent args %q, want %q", got, want)
	}
	if sa, _, _ := unstructured.NestedString(d.Object, "spec", "template", "spec", "serviceAccountName"); sa != "strait-agent" {
		t.Errorf("agent ServiceAccount %q, want strait-agent", sa)
	}
	// The agent reads and renews the broker credential strait join stored.
	role := find(objs, "Role", "strait-agent")
	if role == nil || !strings.Contains(mustYAML(t, role), "strait-broker") {
		t.Errorf("the agent's Role does not grant the Secret strait-broker: %v", role)
	}
	for _, kind := range []string{"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "RoleBinding", "PodDisruptionBudget"} {
		if find(objs, kind, "strait-agent") == nil {
			t.Errorf("no %s strait-agent", kind)
		}
	}
	if find(objs, "Service", "strait-agent-metrics") == nil {
		t.Error("no metrics Service strait-agent-metrics")
	}
	for _, o := range objs {
		if o.GetKind() == "ServiceMonitor" || strings.HasPrefix(o.GetName(), "strait-dns") || strings.HasPrefix(o.GetName(), "strait-federation") {
			t.Errorf("%s %s rendered by default", o.GetKind(), o.GetName())
		}
	}
}

func TestCRDsComeFirst(t *testing.T) {
	objs := render(t, nil)
	want := []string{"clusterproperties.about.k8s.io", "serviceexports.multicluster.x-k8s.io", "serviceimports.multicluster.x-k8s.io", "externalservices.strait.io"}
	for i, name := range want {
		if objs[i].GetKind() != "CustomResourceDefinition" || objs[i].GetName() != name {
			t.Errorf("object %d is %s %s, want CustomResourceDefinition %s", i, objs[i].GetKind(), objs[i].GetName(), name)
		}
	}
	// RBAC before the Deployment that uses it.
	idx := func(kind string) int {
		return slices.IndexFunc(objs, func(o *unstructured.Unstructured) bool { return o.GetKind() == kind })
	}
	if idx("ServiceAccount") > idx("Deployment") || idx("ClusterRoleBinding") > idx("Deployment") {
		t.Errorf("the agent's ServiceAccount or RBAC comes after its Deployment")
	}
}

func TestInvalidValuesAreRefused(t *testing.T) {
	for _, tc := range []struct {
		name   string
		values map[string]any
		want   []string
	}{
		{"negative replicas", map[string]any{"agent": map[string]any{"replicas": -1}}, []string{"/agent/replicas", "minimum"}},
		{"replicas as a word", map[string]any{"agent": map[string]any{"replicas": "two"}}, []string{"/agent/replicas", "want integer"}},
		{"unknown pull policy", map[string]any{"image": map[string]any{"pullPolicy": "Sometimes"}}, []string{"/image/pullPolicy", "Always", "IfNotPresent", "Never"}},
		{"misspelt key", map[string]any{"agent": map[string]any{"replica": 3}}, []string{"/agent", "replica"}},
		{"cluster ID not a DNS label", map[string]any{"clusterID": "Cluster_1"}, []string{"/clusterID"}},
		{"dns without a domain", map[string]any{"dns": map[string]any{"enabled": true}}, []string{"dns.domain"}},
		{"port out of range", map[string]any{"agent": map[string]any{"metricsPort": 70000}}, []string{"/agent/metricsPort"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			objs, err := Render(tc.values, Namespace)
			if err == nil {
				t.Fatalf("Render(%v) accepted the values and rendered %d objects", tc.values, len(objs))
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestOtherNamespacesAreRefused(t *testing.T) {
	_, err := Render(nil, "default")
	if err == nil || !strings.Contains(err.Error(), `namespace "default"`) || !strings.Contains(err.Error(), "strait-system") {
		t.Errorf("Render in namespace default: %v, want an error naming default and strait-system", err)
	}
}

func TestDNSAndFederationToggles(t *testing.T) {
	objs := render(t, map[string]any{
		"dns":        map[string]any{"enabled": true, "domain": "example.com"},
		"federation": map[string]any{"enabled": true, "namespace": "fed"},
		"metrics":    map[string]any{"serviceMonitor": map[string]any{"enabled": true}},
	})
	dns := find(objs, "Deployment", "strait-dns")
	if dns == nil {
		t.Fatal("dns.enabled rendered no Deployment strait-dns")
	}
	a := args(t, dns)
	for _, w := range []string{"dns", "serve", "--domain=example.com", "--listen=:5353", "--broker-kubeconfig=/etc/strait/broker/kubeconfig", "--federation-namespace=fed"} {
		if !slices.Contains(a, w) {
			t.Errorf("strait dns args %q lack %q", a, w)
		}
	}
	svc := find(objs, "Service", "strait-dns")
	if svc == nil || !strings.Contains(mustYAML(t, svc), "port: 53") || !strings.Contains(mustYAML(t, svc), "protocol: UDP") {
		t.Errorf("Service strait-dns does not serve port 53 over UDP: %v", svc)
	}
	fed := find(objs, "Deployment", "strait-federation-controller")
	if fed == nil {
		t.Fatal("federation.enabled rendered no Deployment strait-federation-controller")
	}
	if a := args(t, fed); !slices.Equal(a[:2], []string{"federation", "controller"}) || !slices.Contains(a, "--federation-namespace=fed") {
		t.Errorf("federation controller args %q", a)
	}
	if find(objs, "ClusterRole", "strait-federation-controller") == nil {
		t.Error("no ClusterRole for the federation controller")
	}
	// The agent is told the federation namespace too.
	if a := args(t, find(objs, "Deployment", "strait-agent")); !slices.Contains(a, "--federation-namespace=fed") {
		t.Errorf("agent args %q lack --federation-namespace=fed", a)
	}
	for _, name := range []string{"strait-agent", "strait-dns"} {
		if find(objs, "ServiceMonitor", name) == nil {
			t.Errorf("metrics.serviceMonitor.enabled rendered no ServiceMonitor %s", name)
		}
	}

	// A dedicated broker: the federation controller without an agent.
	objs = render(t, map[string]any{"agent": map[string]any{"enabled": false}, "federation": map[string]any{"enabled": true}})
	for _, o := range objs {
		if strings.HasPrefix(o.GetName(), "strait-agent") {
			t.Errorf("agent.enabled=false still renders %s %s", o.GetKind(), o.GetName())
		}
	}
}

// Only the member that hosts the broker lets its agent read the clusterset namespace's
// ConfigMaps (the registry and policy), through a Role there; no other member's agent may.
func TestBrokerHostRole(t *testing.T) {
	for _, o := range render(t, nil) {
		if o.GetNamespace() == "strait-clusterset" {
			t.Errorf("the default values render %s %s/%s: an ordinary member's agent must not read the broker's registry", o.GetKind(), o.GetNamespace(), o.GetName())
		}
	}
	objs := render(t, map[string]any{"agent": map[string]any{"brokerHost": true}})
	role := find(objs, "Role", "strait-agent-broker-host")
	if role == nil || role.GetNamespace() != "strait-clusterset" || find(objs, "RoleBinding", "strait-agent-broker-host") == nil {
		t.Fatalf("agent.brokerHost=true: Role %v and its binding, want both in strait-clusterset", role)
	}
	if y := mustYAML(t, role); !strings.Contains(y, "configmaps") || strings.Contains(y, "update") || strings.Contains(y, "secrets") {
		t.Errorf("the broker host's Role grants more than reading ConfigMaps:\n%s", y)
	}
}

func TestUserSettings(t *testing.T) {
	objs := render(t, map[string]any{
		"image":        map[string]any{"repository": "registry.example/strait", "tag": "v9.9.9", "pullPolicy": "Always"},
		"clusterID":    "eu1",
		"agent":        map[string]any{"replicas": 3, "extraArgs": []any{"--workers=8"}, "podDisruptionBudget": map[string]any{"enabled": false}},
		"nodeSelector": map[string]any{"kubernetes.io/os": "linux"},
	})
	d := find(objs, "Deployment", "strait-agent")
	c := container(t, d)
	if c["image"] != "registry.example/strait:v9.9.9" || c["imagePullPolicy"] != "Always" {
		t.Errorf("image %v pull policy %v", c["image"], c["imagePullPolicy"])
	}
	a := args(t, d)
	if !slices.Contains(a, "--cluster-id=eu1") || a[len(a)-1] != "--workers=8" {
		t.Errorf("agent args %q: want --cluster-id=eu1 and --workers=8 last", a)
	}
	if r, _, _ := unstructured.NestedInt64(d.Object, "spec", "replicas"); r != 3 {
		t.Errorf("replicas %d, want 3", r)
	}
	if ns, _, _ := unstructured.NestedStringMap(d.Object, "spec", "template", "spec", "nodeSelector"); ns["kubernetes.io/os"] != "linux" {
		t.Errorf("nodeSelector %v", ns)
	}
	if find(objs, "PodDisruptionBudget", "strait-agent") != nil {
		t.Error("podDisruptionBudget.enabled=false still renders one")
	}
}

func mustYAML(t *testing.T, o *unstructured.Unstructured) string {
	t.Helper()
	data, err := yaml.Marshal(o.Object)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// RBAC gives exactly the rights objects of one ServiceAccount, in the order to apply them,
// and refuses a name the chart has no ServiceAccount for.
func TestRBAC(t *testing.T) {
	objs, err := RBAC(map[string]any{"agent": map[string]any{"brokerHost": true}}, AgentServiceAccount)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, o := range objs {
		got = append(got, o.GetKind()+"/"+o.GetName())
	}
	want := []string{"ServiceAccount/strait-agent", "ClusterRole/strait-agent", "ClusterRoleBinding/strait-agent",
		"Role/strait-agent", "Role/strait-agent-broker-host", "RoleBinding/strait-agent", "RoleBinding/strait-agent-broker-host"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("RBAC of the agent on the broker host:\n got %v\nwant %v", got, want)
	}
	if _, err := RBAC(nil, "strait-nobody"); err == nil || !strings.Contains(err.Error(), "strait-nobody") {
		t.Errorf("RBAC of a ServiceAccount the chart lacks: %v; want an error naming it", err)
	}
}
