package records

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	"github.com/strait-io/strait/internal/mcs"
)

func TestRecordRoundTrip(t *testing.T) {
	e := mcs.Export{Cluster: "cluster02", Namespace: "demo", Name: "hello", Type: mcsv1beta1.ClusterSetIP,
		Ports:  []mcsv1beta1.ServicePort{{Name: "http", Port: 80}},
		Labels: map[string]string{"team": "a"}, Host: "abc.com"}
	si := ToServiceImport("strait-member-cluster02", e)
	created := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	si.CreationTimestamp = metav1.NewTime(created)
	got, ok := FromServiceImport(si)
	if !ok {
		t.Fatal("record not recognised")
	}
	if got.Cluster != "cluster02" || got.Namespace != "demo" || got.Name != "hello" || !got.Created.Equal(created) || got.Labels["team"] != "a" || len(got.Ports) != 1 || got.Host != "abc.com" {
		t.Errorf("round trip = %+v", got)
	}
	if k, ok := Key(si); !ok || k != "demo/hello" {
		t.Errorf("Key = %q, %v", k, ok)
	}
}

// The source cluster is the namespace a record lives in, never its label: a record a member
// placed with another member's label in its own namespace still counts as its own.
func TestSourceClusterComesFromTheNamespace(t *testing.T) {
	si := ToServiceImport("strait-member-cluster03", mcs.Export{Cluster: "cluster01", Namespace: "demo", Name: "hello", Type: mcsv1beta1.ClusterSetIP})
	got, ok := FromServiceImport(si)
	if !ok || got.Cluster != "cluster03" {
		t.Errorf("cluster = %q (%v), want cluster03 from the namespace", got.Cluster, ok)
	}
	si.Namespace = "demo"
	if _, ok := FromServiceImport(si); ok {
		t.Error("an object outside a member namespace was taken for a record")
	}
}
