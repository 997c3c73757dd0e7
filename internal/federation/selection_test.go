package federation

import (
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/strait-io/strait/internal/clusterset"
)

func annotated(kv ...string) *corev1.Service {
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: DefaultNamespace, Name: "web", Annotations: map[string]string{}}}
	for i := 0; i+1 < len(kv); i += 2 {
		svc.Annotations[kv[i]] = kv[i+1]
	}
	return svc
}

func TestParseSelection(t *testing.T) {
	for _, tc := range []struct {
		name    string
		svc     *corev1.Service
		all     bool
		want    []string
		wantErr string
	}{
		{name: "absent selects all", svc: annotated(), all: true},
		{name: "list, sorted and unique, spaces ignored", svc: annotated(AnnotationClusters, " c2, c1 ,c2,"), want: []string{"c1", "c2"}},
		// An emptied annotation is a mistake to report, not an order to remove every shard.
		{name: "empty value is an error", svc: annotated(AnnotationClusters, ""), wantErr: "names no cluster"},
		{name: "only separators is an error", svc: annotated(AnnotationClusters, " , ,"), wantErr: "names no cluster"},
		{name: "invalid ID", svc: annotated(AnnotationClusters, "c1,Bad_ID"), wantErr: AnnotationClusters},
		{name: "too long", svc: annotated(AnnotationClusters, strings.Repeat("a", 64)), wantErr: AnnotationClusters},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sel, err := ParseSelection(tc.svc)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one mentioning %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if sel.All != tc.all || !slices.Equal(sel.Clusters, tc.want) {
				t.Errorf("selection %+v, want all=%v clusters=%v", sel, tc.all, tc.want)
			}
		})
	}
}

func TestResolve(t *testing.T) {
	members := []clusterset.Member{{ID: "c1"}, {ID: "c2"}, {ID: "c3"}}
	ids := func(ms []clusterset.Member) []string {
		var out []string
		for _, m := range ms {
			out = append(out, m.ID)
		}
		return out
	}
	for _, tc := range []struct {
		name          string
		sel           Selection
		want, unknown []string
	}{
		{name: "all", sel: Selection{All: true}, want: []string{"c1", "c2", "c3"}},
		{name: "some", sel: Selection{Clusters: []string{"c1", "c3"}}, want: []string{"c1", "c3"}},
		{name: "unknown cluster reported, known ones placed", sel: Selection{Clusters: []string{"c2", "nope"}}, want: []string{"c2"}, unknown: []string{"nope"}},
		{name: "none", sel: Selection{}, want: nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, unknown := tc.sel.Resolve(members)
			if !slices.Equal(ids(got), tc.want) || !slices.Equal(unknown, tc.unknown) {
				t.Errorf("Resolve = %v, %v; want %v, %v", ids(got), unknown, tc.want, tc.unknown)
			}
		})
	}
}

func TestParseTTL(t *testing.T) {
	for _, tc := range []struct {
		value string
		want  time.Duration
		err   bool
	}{
		{value: "30", want: 30 * time.Second},
		{value: "90s", want: 90 * time.Second},
		{value: "5m", want: 5 * time.Minute},
		{value: "0", err: true},
		{value: "-5", err: true},
		{value: "1.5s", err: true},
		{value: "500ms", err: true},
		{value: "soon", err: true},
		{value: "2147483648", err: true},
	} {
		got, err := ParseTTL(annotated(AnnotationTTL, tc.value))
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("ParseTTL(%q) = %v, %v; want %v, error %v", tc.value, got, err, tc.want, tc.err)
		}
	}
	if got, err := ParseTTL(annotated()); got != 0 || err != nil {
		t.Errorf("absent: %v, %v", got, err)
	}
}

func TestConfigValidate(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatal(err)
	}
	for _, c := range []Config{
		{Namespace: "Bad", Name: "f"},
		{Namespace: "ns", Name: "f.g"},
		{Namespace: "ns", Name: "f", Grace: -time.Second},
	} {
		if err := c.Validate(); err == nil {
			t.Errorf("%+v: no error", c)
		}
	}
}
