package join

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/rest"
)

// --install --dry-run prints the chart's manifests and contacts no cluster: the contexts
// named here exist in no kubeconfig.
func TestJoinInstallDryRunPrintsManifests(t *testing.T) {
	out, err := run(t, NewJoin(), "--kubeconfig", "/nonexistent", "--context", "c1", "--broker-context", "b",
		"--install", "--dry-run", "--set", "image.tag=v9.9.9,agent.replicas=3")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, want := range []string{"kind: CustomResourceDefinition", "kind: Deployment", "name: strait-agent", "image: strait.io/strait:v9.9.9", "replicas: 3", "multicluster clusterset.local"} {
		if !strings.Contains(out, want) {
			t.Errorf("the manifests lack %q", want)
		}
	}
	if strings.Index(out, "kind: CustomResourceDefinition") > strings.Index(out, "kind: Deployment") {
		t.Error("the CRDs do not come first")
	}
	js, err := run(t, NewJoin(), "--kubeconfig", "/nonexistent", "--context", "c1", "--broker-context", "b", "--install", "--dry-run", "-o", "json")
	if err != nil || !strings.Contains(js, `"kind": "List"`) {
		t.Errorf("-o json: %v\n%.300s", err, js)
	}
}

func TestJoinInstallRefusesBadInputBeforeWriting(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--install", "--set", "agent.replicas=two"}, "replicas"},
		{[]string{"--install", "--set", "image.pullPolicy=Sometimes"}, "pullPolicy"},
		{[]string{"--install", "--set", "agent.replicas"}, "--set \"agent.replicas\""},
		{[]string{"--install", "--values", "/nonexistent/values.yaml"}, "--values"},
		{[]string{"--set", "agent.replicas=3"}, "--set applies only with --install"},
		{[]string{"--dry-run"}, "--dry-run applies only with --install"},
	} {
		// The kubeconfig does not exist: an error about it would mean the input was not
		// checked first.
		args := append([]string{"--kubeconfig", "/nonexistent", "--context", "c1", "--broker-context", "b"}, c.args...)
		out, err := run(t, NewJoin(), args...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: err %v (output %q); want an error naming %q", c.args, err, out, c.want)
		}
	}
}

// apiServer answers GET kube-system with the given uid and counts the requests.
func apiServer(t *testing.T, uid string, hits *int) *rest.Config {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		*hits++
		if r.URL.Path != "/api/v1/namespaces/kube-system" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"kube-system","uid":%q}}`, uid)
	}))
	t.Cleanup(srv.Close)
	return &rest.Config{Host: srv.URL}
}

func hasBrokerHostRole(objs []*unstructured.Unstructured) bool {
	for _, o := range objs {
		if o.GetKind() == "Role" && o.GetName() == "strait-agent-broker-host" {
			return true
		}
	}
	return false
}

// The install on the member that is also the broker's cluster (one kube-system) gives its
// agent the broker host's Role; on any other member it does not; a value the user set is
// kept without asking the clusters.
func TestInstallOnTheBrokerHost(t *testing.T) {
	ctx := context.Background()
	var hits int
	host, other, broker := apiServer(t, "uid-1", &hits), apiServer(t, "uid-2", &hits), apiServer(t, "uid-1", &hits)
	f := &installFlags{}
	objs, err := f.render()
	if err != nil {
		t.Fatal(err)
	}
	var progress bytes.Buffer
	got, err := f.forBrokerHost(ctx, host, broker, objs, &progress)
	if err != nil || !hasBrokerHostRole(got) || !strings.Contains(progress.String(), "agent.brokerHost=true") {
		t.Fatalf("on the broker's cluster: %v, broker host Role %v, said %q", err, hasBrokerHostRole(got), progress.String())
	}
	if got, err = f.forBrokerHost(ctx, other, broker, objs, &progress); err != nil || hasBrokerHostRole(got) {
		t.Fatalf("on another member: %v, broker host Role %v; want none", err, hasBrokerHostRole(got))
	}
	hits = 0
	f.set = []string{"agent.brokerHost=false"}
	if got, err = f.forBrokerHost(ctx, host, broker, objs, &progress); err != nil || hasBrokerHostRole(got) || hits != 0 {
		t.Fatalf("with agent.brokerHost=false set: %v, broker host Role %v, %d requests; want the user's value, no request", err, hasBrokerHostRole(got), hits)
	}
	// A member that cannot be read: the error says how to skip the question.
	f.set = nil
	down := &rest.Config{Host: "http://127.0.0.1:1"}
	if _, err := f.forBrokerHost(ctx, down, broker, objs, &progress); err == nil || !strings.Contains(err.Error(), "--set agent.brokerHost=true or false") {
		t.Fatalf("an unreachable member: %v", err)
	}
}
