// Package netns builds the lab's network out of Linux network namespaces: one namespace per
// cluster (its node, holding its kubelet, containerd, pods' bridge, kube-proxy and CoreDNS) and a
// router namespace whose bridge joins them into one flat, routable network. Nothing is ever
// configured in the host's own namespace. It also opens sockets inside a namespace from this
// process, which is how the lab's API forwarders and registry listen there.
package netns

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/strait-io/strait/internal/lab/plan"
)

// RunDir is where iproute2 keeps named network namespaces.
const RunDir = "/run/netns"

// EtcDir holds per-namespace files that `ip netns exec` bind-mounts over /etc.
const EtcDir = "/etc/netns"

// bridge is the name of the router's bridge (inside the router namespace only).
const bridge = "br0"

// Exists reports whether a named network namespace exists.
func Exists(name string) bool {
	_, err := os.Stat(filepath.Join(RunDir, name))
	return err == nil
}

// ip runs one iproute2 command and returns its error with the command line and output.
func ip(ctx context.Context, args ...string) error {
	out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// Setup creates the whole lab network. If any step fails, everything it created is removed
// again, so a failed setup never leaves namespaces behind.
func Setup(ctx context.Context, l *plan.Lab) (err error) {
	for _, ns := range l.Namespaces() {
		if Exists(ns) {
			return fmt.Errorf("network namespace %s already exists: another lab named %q is running or was not cleaned up; run `strait lab down --lab %s`", ns, l.Name, l.Name)
		}
	}
	defer func() {
		if err != nil {
			_ = Teardown(context.WithoutCancel(ctx), l)
		}
	}()
	prefix, err := prefixLen(l.NodeNetwork)
	if err != nil {
		return err
	}
	r := l.RouterNS
	steps := [][]string{
		{"netns", "add", r},
		{"-n", r, "link", "set", "lo", "up"},
		{"-n", r, "link", "add", bridge, "type", "bridge"},
		{"-n", r, "addr", "add", l.RouterIP + "/" + prefix, "dev", bridge},
		{"-n", r, "link", "set", bridge, "up"},
	}
	for _, s := range steps {
		if err := ip(ctx, s...); err != nil {
			return err
		}
	}
	// The router forwards between clusters on the same bridge; redirects would only teach
	// the nodes a shortcut they do not need.
	if err := sysctl(r, "net.ipv4.ip_forward", "1"); err != nil {
		return err
	}
	for _, key := range []string{"net.ipv4.conf.all.send_redirects", "net.ipv4.conf.default.send_redirects", "net.ipv4.conf." + bridge + ".send_redirects"} {
		if err := sysctl(r, key, "0"); err != nil {
			return err
		}
	}
	for _, c := range l.Clusters {
		if err := setupCluster(ctx, l, c, prefix); err != nil {
			return fmt.Errorf("network of cluster %s: %w", c.Name, err)
		}
	}
	return nil
}

func setupCluster(ctx context.Context, l *plan.Lab, c plan.Cluster, prefix string) error {
	r, ns := l.RouterNS, c.Namespace
	port := fmt.Sprintf("v%d", c.Index)
	steps := [][]string{
		{"netns", "add", ns},
		{"-n", ns, "link", "set", "lo", "up"},
		// Created inside the router namespace, so the names never meet another lab's.
		{"-n", r, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns},
		{"-n", r, "link", "set", port, "master", bridge},
		{"-n", r, "link", "set", port, "up"},
		{"-n", ns, "addr", "add", c.NodeIP + "/" + prefix, "dev", "eth0"},
		{"-n", ns, "link", "set", "eth0", "up"},
		{"-n", ns, "route", "add", "default", "via", l.RouterIP},
		// The pod CIDR lives on the node's CNI bridge (cni0, created with the first pod);
		// the router sends other clusters' traffic for it to the node.
		{"-n", r, "route", "add", c.PodCIDR, "via", c.NodeIP},
	}
	for _, s := range steps {
		if err := ip(ctx, s...); err != nil {
			return err
		}
	}
	// The node routes between its pods' bridge and the lab network, as a node does. The
	// bridge plugin would set this with the first pod; set it now so it never depends on it.
	return sysctl(ns, "net.ipv4.ip_forward", "1")
}

// prefixLen returns the prefix length of a CIDR as a string.
func prefixLen(cidr string) (string, error) {
	_, n, err := net.ParseCIDR(cidr)
	if err != nil {
		return "", fmt.Errorf("node network %q: %w", cidr, err)
	}
	ones, _ := n.Mask.Size()
	return fmt.Sprint(ones), nil
}

// sysctl sets a sysctl inside a namespace by writing /proc/sys from a thread that has
// entered it.
func sysctl(ns, key, value string) error {
	return Do(ns, func() error {
		path := filepath.Join("/proc/sys", strings.ReplaceAll(key, ".", "/"))
		if err := os.WriteFile(path, []byte(value), 0o644); err != nil {
			return fmt.Errorf("sysctl %s=%s in %s: %w", key, value, ns, err)
		}
		return nil
	})
}

// Teardown deletes every namespace of the lab (which removes their interfaces, addresses and
// routes with them) and their /etc/netns files. Missing pieces are not an error; it reports
// everything it could not remove.
func Teardown(ctx context.Context, l *plan.Lab) error {
	var errs []error
	names := l.Namespaces()
	// Clusters first, router last: deleting a cluster namespace removes its veth pair.
	for i := len(names) - 1; i >= 0; i-- {
		ns := names[i]
		if Exists(ns) {
			if err := ip(ctx, "netns", "delete", ns); err != nil {
				errs = append(errs, err)
			}
		}
		if err := os.RemoveAll(filepath.Join(EtcDir, ns)); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Do runs f on an OS thread that has entered the named network namespace. Sockets f creates
// stay in that namespace for their whole life, whichever thread uses them later.
func Do(ns string, f func() error) error {
	target, err := os.Open(filepath.Join(RunDir, ns))
	if err != nil {
		return fmt.Errorf("opening network namespace %s: %w", ns, err)
	}
	defer target.Close()

	errc := make(chan error, 1)
	// A fresh goroutine, so that if the thread cannot return to the host namespace it is
	// simply discarded (a locked thread exits with its goroutine) and never reused.
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			errc <- fmt.Errorf("opening current network namespace: %w", err)
			return
		}
		defer orig.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("entering network namespace %s: %w", ns, err)
			return
		}
		ferr := f()
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- errors.Join(ferr, fmt.Errorf("leaving network namespace %s: %w", ns, err))
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// Listen opens a listener inside a namespace.
func Listen(ns, network, address string) (net.Listener, error) {
	var l net.Listener
	err := Do(ns, func() error {
		var err error
		l, err = net.Listen(network, address)
		return err
	})
	return l, err
}

// ListenPacket opens a packet listener (UDP) inside a namespace.
func ListenPacket(ns, network, address string) (net.PacketConn, error) {
	var c net.PacketConn
	err := Do(ns, func() error {
		var err error
		c, err = net.ListenPacket(network, address)
		return err
	})
	return c, err
}

// Dialer connects from inside a namespace, for health checks of components that listen there.
type Dialer struct{ Namespace string }

// DialContext creates the socket inside the namespace and connects it.
func (d Dialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	var c net.Conn
	err := Do(d.Namespace, func() error {
		var err error
		c, err = (&net.Dialer{}).DialContext(ctx, network, address)
		return err
	})
	return c, err
}

// WriteResolvConf writes the resolv.conf that `ip netns exec` shows to programs run in the
// namespace, as the kubelet writes one into each pod.
func WriteResolvConf(ns, content string) error {
	dir := filepath.Join(EtcDir, ns)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "resolv.conf"), []byte(content), 0o644)
}

// Listener opens listeners inside one namespace; the node simulator uses it to serve pod
// addresses.
type Listener struct{ Namespace string }

// Listen opens a listener inside the namespace.
func (l Listener) Listen(_ context.Context, network, address string) (net.Listener, error) {
	return Listen(l.Namespace, network, address)
}
