package policy

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func ns(name string, annotations map[string]string) *corev1.Namespace {
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: annotations}}
}

func TestExport(t *testing.T) {
	tests := []struct {
		name      string
		namespace string
		ns        *corev1.Namespace
		want      bool
	}{
		{"ordinary namespace", "demo", ns("demo", nil), true},
		{"kube-system refused", "kube-system", ns("kube-system", nil), false},
		{"default refused", "default", nil, false},
		{"default allowed by annotation", "default", ns("default", map[string]string{AnnotationAllowExport: "true"}), true},
		{"annotation must say true", "default", ns("default", map[string]string{AnnotationAllowExport: "yes"}), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			msg, ok := Export(tt.namespace, tt.ns)
			if ok != tt.want {
				t.Errorf("Export(%s) = %v (%s), want %v", tt.namespace, ok, msg, tt.want)
			}
			if !ok && msg == "" {
				t.Error("a refusal must say why")
			}
		})
	}
}

func TestImportHonoursAllowedClusters(t *testing.T) {
	team := ns("payments", map[string]string{AnnotationAllowedClusters: "cluster01, cluster02"})
	tests := []struct {
		cluster string
		ns      *corev1.Namespace
		want    bool
	}{
		{"cluster01", team, true},
		{"cluster02", team, true},
		{"cluster03", team, false},
		{"cluster03", ns("payments", nil), true},
		{"cluster03", nil, true},
	}
	for _, tt := range tests {
		msg, ok := Import("payments", tt.cluster, tt.ns)
		if ok != tt.want {
			t.Errorf("Import(payments, %s) = %v (%s), want %v", tt.cluster, ok, msg, tt.want)
		}
	}
	if _, ok := Import("kube-system", "cluster01", ns("kube-system", nil)); ok {
		t.Error("kube-system imports allowed without the annotation")
	}
}

func TestClustersetPolicy(t *testing.T) {
	cm := func(data string) *corev1.ConfigMap {
		return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "strait-clusterset", Name: "namespace-policy"}, Data: map[string]string{PolicyKey: data}}
	}
	p, err := ParseClusterset(cm("namespaces:\n  payments: [cluster01, cluster02]\n  kube-public: ['*']\n  sealed: []\nhostImports: [shop]\n"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		ns, cluster string
		want        bool
	}{
		{"payments", "cluster01", true},
		{"payments", "cluster03", false},
		{"demo", "cluster03", true},         // not listed: open
		{"kube-system", "cluster01", false}, // closed by default
		{"kube-public", "cluster03", true},  // opened for every member
		{"sealed", "cluster01", false},
	} {
		msg, ok := p.Allows(tc.ns, tc.cluster)
		if ok != tc.want || (!ok && !strings.Contains(msg, tc.ns)) {
			t.Errorf("Allows(%s, %s) = %v %q, want %v and a message naming the namespace", tc.ns, tc.cluster, ok, msg, tc.want)
		}
	}
	if !p.AllowsHostImport("shop") || p.AllowsHostImport("demo") {
		t.Error("AllowsHostImport")
	}
	def, err := ParseClusterset(nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := def.Allows("kube-system", "c1"); ok {
		t.Error("the default policy opens kube-system")
	}
	if def.AllowsHostImport("shop") {
		t.Error("the default policy lets host imports take a cluster.local name")
	}
	for data, want := range map[string]string{
		"namespaces:\n  Bad_NS: [c1]\n": `"Bad_NS" is not a namespace name`,
		"namespaces:\n  ok: [C_1]\n":    `"C_1" is not a cluster ID`,
		"hostImports: [x y]\n":          `"x y" is not a namespace name`,
		"namespace:\n  typo: [c1]\n":    "unknown field",
		"namespaces: [not, a, map]\n":   "namespace policy strait-clusterset/namespace-policy",
	} {
		if _, err := ParseClusterset(cm(data)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseClusterset(%q) = %v, want an error containing %q", data, err, want)
		}
	}
}
