package netns

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"github.com/strait-io/strait/internal/lab/plan"
)

func requireRoot(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("creates network namespaces (root); skipped under -short (make test-unit)")
	}
	if os.Geteuid() != 0 {
		t.Fatal("the lab network tests create network namespaces and need root")
	}
}

func testLab(t *testing.T) *plan.Lab {
	t.Helper()
	l, err := plan.Build(plan.Spec{Lab: fmt.Sprintf("n%d", os.Getpid()%100000), APIPortBase: 20000,
		Clusters: []plan.ClusterSpec{{Name: "a"}, {Name: "b"}}})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// The lab network is flat: a listener on the pod bridge of cluster a answers a client in
// cluster b, through the router; nothing of it is visible in the host namespace; and
// Teardown removes every namespace.
func TestSetupRoutesPodAddressesBetweenClustersAndTeardownRemovesAll(t *testing.T) {
	requireRoot(t)
	l := testLab(t)
	ctx := context.Background()
	if err := Setup(ctx, l); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = Teardown(ctx, l) })
	a, b := l.Clusters[0], l.Clusters[1]

	// What the CNI bridge plugin does with a's first pod: a bridge holding the pod CIDR's
	// gateway address.
	podIP := "10.1.0.1"
	for _, args := range [][]string{
		{"-n", a.Namespace, "link", "add", "cni0", "type", "bridge"},
		{"-n", a.Namespace, "addr", "add", podIP + "/16", "dev", "cni0"},
		{"-n", a.Namespace, "link", "set", "cni0", "up"},
	} {
		if err := ip(ctx, args...); err != nil {
			t.Fatal(err)
		}
	}
	ln, err := Listen(a.Namespace, "tcp", net.JoinHostPort(podIP, "8080"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = c.Write([]byte("hello from a"))
			c.Close()
		}
	}()
	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	conn, err := Dialer{Namespace: b.Namespace}.DialContext(dctx, "tcp", net.JoinHostPort(podIP, "8080"))
	if err != nil {
		t.Fatalf("cluster b cannot reach pod address %s of cluster a: %v", podIP, err)
	}
	got, _ := io.ReadAll(conn)
	conn.Close()
	if string(got) != "hello from a" {
		t.Errorf("read %q", got)
	}
	// The host namespace holds no lab address (checked without sending anything: traffic may
	// only go to loopback or into the lab's own namespaces).
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	_, nodeNet, _ := net.ParseCIDR(l.NodeNetwork)
	_, podNet, _ := net.ParseCIDR(a.PodCIDR)
	for _, addr := range addrs {
		ip, _, _ := net.ParseCIDR(addr.String())
		if nodeNet.Contains(ip) || podNet.Contains(ip) {
			t.Errorf("host namespace has lab address %s", addr)
		}
	}
	if err := Setup(ctx, l); err == nil {
		t.Error("a second Setup of the same lab succeeded; want an error naming the existing namespace")
	}

	if err := Teardown(ctx, l); err != nil {
		t.Fatal(err)
	}
	for _, ns := range l.Namespaces() {
		if Exists(ns) {
			t.Errorf("namespace %s left after Teardown", ns)
		}
	}
}
