package chart

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// helmBinary is bin/tools/helm, which `make helm` (and so `make test`) builds.
func helmBinary(t *testing.T) string {
	t.Helper()
	helm, err := filepath.Abs(filepath.Join("..", "..", "bin", "tools", "helm"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(helm); err != nil {
		if testing.Short() {
			t.Skip("bin/tools/helm is missing: run `make helm` to lint the chart with Helm itself")
		}
		t.Fatalf("bin/tools/helm is missing: run `make helm` (make test builds it first): %v", err)
	}
	return helm
}

func runHelm(t *testing.T, helm string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(helm, args...)
	cmd.Dir = filepath.Join("..", "..")
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+t.TempDir(), "HELM_CONFIG_HOME="+t.TempDir(), "HELM_DATA_HOME="+t.TempDir())
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// What a Helm user runs: lint --strict passes with the defaults and with every component
// on, template shows the same objects Render does, and bad values or the wrong namespace
// are refused with a message naming them.
func TestHelmLintAndTemplate(t *testing.T) {
	helm := helmBinary(t)
	for _, set := range []string{"", "dns.enabled=true,dns.domain=example.com,federation.enabled=true,metrics.serviceMonitor.enabled=true"} {
		args := []string{"lint", "--strict", "--namespace", Namespace, "charts/strait"}
		if set != "" {
			args = append(args, "--set", set)
		}
		if out, err := runHelm(t, helm, args...); err != nil || !strings.Contains(out, "0 chart(s) failed") {
			t.Errorf("helm %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}

	out, err := runHelm(t, helm, "template", "strait", "charts/strait", "--namespace", Namespace, "--include-crds")
	if err != nil {
		t.Fatalf("helm template: %v\n%s", err, out)
	}
	objs, err := decode("helm template", out)
	if err != nil {
		t.Fatal(err)
	}
	rendered, err := Render(nil, Namespace)
	if err != nil {
		t.Fatal(err)
	}
	key := func(kind, name string) string { return kind + "/" + name }
	var fromHelm, fromRender []string
	for _, o := range objs {
		fromHelm = append(fromHelm, key(o.GetKind(), o.GetName()))
	}
	for _, o := range rendered {
		fromRender = append(fromRender, key(o.GetKind(), o.GetName()))
	}
	slices.Sort(fromHelm)
	slices.Sort(fromRender)
	if !slices.Equal(fromHelm, fromRender) {
		t.Errorf("helm template renders %v\nRender renders %v", fromHelm, fromRender)
	}
	if !strings.Contains(out, "image: strait.io/strait:") {
		t.Errorf("helm template: no strait.io/strait image\n%s", out)
	}

	out, err = runHelm(t, helm, "template", "strait", "charts/strait", "--namespace", Namespace, "--set", "agent.replicas=-1", "--set", "image.pullPolicy=Sometimes")
	if err == nil || !strings.Contains(out, "/agent/replicas") || !strings.Contains(out, "/image/pullPolicy") || !strings.Contains(out, "IfNotPresent") {
		t.Errorf("helm template with agent.replicas=-1 and image.pullPolicy=Sometimes: %v, want both refused\n%s", err, out)
	}
	out, err = runHelm(t, helm, "template", "strait", "charts/strait", "--namespace", "default")
	if err == nil || !strings.Contains(out, "strait-system") {
		t.Errorf("helm template --namespace default: %v, want a refusal naming strait-system\n%s", err, out)
	}
}
