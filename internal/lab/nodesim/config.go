package nodesim

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"
)

// DefaultHeartbeatInterval is how often the node Lease is renewed when Config leaves it unset;
// it matches the kubelet's default.
const DefaultHeartbeatInterval = 10 * time.Second

// Listener opens the TCP listeners that pod responders serve on. The lab passes one that
// listens inside the cluster's network namespace, where pod addresses are routed.
type Listener interface {
	Listen(ctx context.Context, network, address string) (net.Listener, error)
}

// Config describes the one node a Simulator runs.
type Config struct {
	// Cluster is the cluster name reported by pod responders.
	Cluster string
	// NodeName is the name of the Node object; it must be a DNS-1123 subdomain.
	NodeName string
	// NodeIP is the node's InternalIP and the address of hostNetwork pods.
	NodeIP string
	// PodCIDR is the node's pod CIDR in canonical form (for example 10.1.0.0/16). Pod
	// addresses start after the network address and the gateway (.1), skip NodeIP and, for
	// IPv4, the broadcast address.
	PodCIDR string
	// Region and Zone become the topology.kubernetes.io labels of the Node.
	Region string
	Zone   string
	// HeartbeatInterval is how often the node Lease is renewed; DefaultHeartbeatInterval if zero.
	HeartbeatInterval time.Duration
	// Listener opens the listeners of pod responders; if nil, responders are not served.
	Listener Listener
}

// validated is a Config with its addresses parsed and defaults applied.
type validated struct {
	Config
	nodeAddr netip.Addr
	podCIDR  netip.Prefix
}

func (c Config) validate() (validated, error) {
	var errs []error
	if c.Cluster == "" {
		errs = append(errs, errors.New("cluster name is empty"))
	}
	if c.NodeName == "" {
		errs = append(errs, errors.New("node name is empty"))
	} else if msgs := validation.IsDNS1123Subdomain(c.NodeName); len(msgs) > 0 {
		errs = append(errs, fmt.Errorf("node name %q is not a DNS-1123 subdomain: %v", c.NodeName, msgs))
	}
	nodeAddr, err := netip.ParseAddr(c.NodeIP)
	if err != nil {
		errs = append(errs, fmt.Errorf("node IP %q: %w", c.NodeIP, err))
	} else if nodeAddr.Zone() != "" {
		errs = append(errs, fmt.Errorf("node IP %q must not carry a zone", c.NodeIP))
	}
	nodeAddr = nodeAddr.Unmap()
	podCIDR, err := netip.ParsePrefix(c.PodCIDR)
	switch {
	case err != nil:
		errs = append(errs, fmt.Errorf("pod CIDR %q: %w", c.PodCIDR, err))
	case podCIDR != podCIDR.Masked():
		errs = append(errs, fmt.Errorf("pod CIDR %q has host bits set; use %s", c.PodCIDR, podCIDR.Masked()))
	case podCIDR.Addr().BitLen()-podCIDR.Bits() < 2:
		errs = append(errs, fmt.Errorf("pod CIDR %q is too small: it needs room for at least one pod address", c.PodCIDR))
	case nodeAddr.IsValid() && nodeAddr.BitLen() != podCIDR.Addr().BitLen():
		errs = append(errs, fmt.Errorf("node IP %q and pod CIDR %q are of different IP families", c.NodeIP, c.PodCIDR))
	}
	if c.HeartbeatInterval < 0 {
		errs = append(errs, fmt.Errorf("heartbeat interval %s is negative", c.HeartbeatInterval))
	}
	if c.Region != "" {
		if msgs := validation.IsValidLabelValue(c.Region); len(msgs) > 0 {
			errs = append(errs, fmt.Errorf("region %q is not a valid label value: %v", c.Region, msgs))
		}
	}
	if c.Zone != "" {
		if msgs := validation.IsValidLabelValue(c.Zone); len(msgs) > 0 {
			errs = append(errs, fmt.Errorf("zone %q is not a valid label value: %v", c.Zone, msgs))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return validated{}, fmt.Errorf("invalid node simulator config: %w", err)
	}
	if c.HeartbeatInterval == 0 {
		c.HeartbeatInterval = DefaultHeartbeatInterval
	}
	return validated{Config: c, nodeAddr: nodeAddr, podCIDR: podCIDR}, nil
}
