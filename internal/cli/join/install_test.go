package join

import (
	"strings"
	"testing"
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
