package supervisor

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	mcsclient "sigs.k8s.io/mcs-api/pkg/client/clientset/versioned"

	dnspkg "github.com/strait-io/strait/internal/dns"
	"github.com/strait-io/strait/internal/dns/server"
	"github.com/strait-io/strait/internal/dns/zone"
	"github.com/strait-io/strait/internal/federation"
	"github.com/strait-io/strait/internal/lab/netns"
	"github.com/strait-io/strait/internal/lab/plan"
)

// LabDomain is the federation domain of the lab's strait dns. .test is reserved for testing
// (RFC 6761): no real resolver answers it, so a lab name can never reach the internet's DNS.
const LabDomain = "strait.test"

// labDNSTTL is the TTL of the lab's service and negative answers. strait dns defaults to
// 180 s (30 s negative), right for real resolvers but too long for a lab whose point is to
// show a shard failing over.
const labDNSTTL = 5 * time.Second

// labDNSAddr is where the lab's strait dns listens: the router's address, on the bridge that
// every cluster's node is attached to.
func labDNSAddr(l *plan.Lab) string { return net.JoinHostPort(l.RouterIP, "53") }

// dnsConfig is the lab's strait dns server: authoritative for LabDomain and the default
// federation's short names, on the router's address. Every cluster's CoreDNS forwards from
// its node address, so each node address (a /32) names its cluster.
func dnsConfig(l *plan.Lab) (server.Config, error) {
	router, err := netip.ParseAddr(l.RouterIP)
	if err != nil {
		return server.Config{}, fmt.Errorf("lab %s: router address %q: %w", l.Name, l.RouterIP, err)
	}
	cfg := server.Config{
		Zone: zone.Config{Domain: LabDomain, DefaultTTL: labDNSTTL, NegativeTTL: labDNSTTL,
			Nameservers: []zone.Nameserver{{Name: "ns." + LabDomain, Addresses: []netip.Addr{router}}}},
		Listeners: []server.Listener{{Addr: labDNSAddr(l)}},
	}
	for _, c := range l.Clusters {
		node, err := netip.ParseAddr(c.NodeIP)
		if err != nil {
			return server.Config{}, fmt.Errorf("cluster %s: node address %q: %w", c.Name, c.NodeIP, err)
		}
		// Shards are named by cluster ID, so the source must be too.
		cfg.Sources = append(cfg.Sources, server.Source{Prefix: netip.PrefixFrom(node, node.BitLen()), Cluster: c.ID})
	}
	return cfg, cfg.Zone.Validate()
}

// dnsRunner runs the lab's strait dns as `strait dns serve --broker-context <broker>` would,
// with its sockets in the router's network namespace, restarting it after an error (the
// broker's API down at start, the address taken).
func dnsRunner(l *plan.Lab, broker *rest.Config) (func(context.Context) error, error) {
	base, err := dnsConfig(l)
	if err != nil {
		return nil, err
	}
	client, err := kubernetes.NewForConfig(broker)
	if err != nil {
		return nil, err
	}
	brokerMCS, err := mcsclient.NewForConfig(broker)
	if err != nil {
		return nil, err
	}
	run := func(ctx context.Context) error {
		cfg := base
		// BrokerSource adds to these; every attempt starts from the lab's own.
		cfg.Clusters, cfg.Zone.Federations = slices.Clone(base.Clusters), slices.Clone(base.Zone.Federations)
		// The lab serves no metrics: the liveness collector is not needed.
		src, _, err := dnspkg.BrokerSource(ctx, client, brokerMCS, federation.DefaultConfig(), &cfg)
		if err != nil {
			return err
		}
		return dnspkg.Serve(ctx, dnspkg.ServeConfig{Server: cfg, Source: src,
			// The Source never lists nothing on an error (it fails instead), so an empty
			// list is a federation without services, and deleting the last one must
			// remove its names.
			AllowEmpty: true,
			Bind:       func(start func() error) error { return netns.Do(l.RouterNS, start) },
		})
	}
	return restarting(StraitDNS, Broker(l).Name, run), nil
}

// startLabDNS starts strait dns as a component of the broker cluster and waits until it
// answers.
func (s *Supervisor) startLabDNS(ctx context.Context, broker *rest.Config) error {
	run, err := dnsRunner(s.lab, broker)
	if err != nil {
		return err
	}
	b := Broker(s.lab)
	cl := s.clusters[b.Name]
	t0 := time.Now()
	cl.startTask(StraitDNS, runs(run))
	wctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	err = wait.PollUntilContextCancel(wctx, 100*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		return cl.checker.labDNS(ctx) == nil, nil
	})
	if err != nil {
		return fmt.Errorf("strait dns of lab %s did not answer on %s: %w", s.lab.Name, labDNSAddr(s.lab), err)
	}
	s.event(b.Name, "%s is up: %s and <svc>.<ns>.%s on %s (%s)", StraitDNS, LabDomain, federation.DefaultName,
		labDNSAddr(s.lab), time.Since(t0).Round(100*time.Millisecond))
	return nil
}
