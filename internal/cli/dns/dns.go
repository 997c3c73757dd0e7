// Package dns implements `strait dns`: the authoritative server of the federation domain
// (`strait dns serve`) with its publishers, and `strait dns zonefile`, which prints the
// records as a zone file other DNS servers can load.
package dns

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/klog/v2"
	mcsclient "sigs.k8s.io/mcs-api/pkg/client/clientset/versioned"

	dnspkg "github.com/strait-io/strait/internal/dns"
	"github.com/strait-io/strait/internal/dns/publish/dnsendpoint"
	"github.com/strait-io/strait/internal/dns/publish/rfc2136"
	"github.com/strait-io/strait/internal/dns/server"
	"github.com/strait-io/strait/internal/dns/zone"
	"github.com/strait-io/strait/internal/federation"
	"github.com/strait-io/strait/internal/kubeconfig"
)

// New returns the `dns` command group.
func New() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "dns",
		Short: "Serve and publish the federation's health-aware DNS names",
		Long: "strait dns is authoritative for the federation domain: <svc>.<ns>.<fed>.svc.<domain>\n" +
			"(global), ...svc.<region>.<domain> and ...svc.<zone>.<region>.<domain>, where a level\n" +
			"without healthy shards is a CNAME to the enclosing one, and for the in-cluster short\n" +
			"names <svc>.<ns>.<fed> forwarded by member clusters' CoreDNS. It also publishes the\n" +
			"records to DNS servers you run (RFC 2136) and to ExternalDNS (DNSEndpoint objects).\n" +
			"See docs/dns.md.",
	}
	cmd.AddCommand(newServe(), newZonefile())
	return cmd
}

// zoneFlags are the zone model's settings.
type zoneFlags struct {
	domain      string
	ttl         time.Duration
	negativeTTL time.Duration
	nameservers []string
	hostmaster  string
	federations []string
}

func (z *zoneFlags) add(fs *pflag.FlagSet) {
	fs.StringVar(&z.domain, "domain", "", "the federation domain, e.g. example.com (required)")
	fs.DurationVar(&z.ttl, "ttl", zone.DefaultTTL, "TTL of the service records (a service may override it)")
	fs.DurationVar(&z.negativeTTL, "negative-ttl", zone.DefaultNegativeTTL, "how long resolvers cache NXDOMAIN and NODATA (SOA minimum)")
	fs.StringArrayVar(&z.nameservers, "nameserver", nil, "NS record of the domain, NAME or NAME=IP[,IP...] (repeatable; default ns.<domain>)")
	fs.StringVar(&z.hostmaster, "hostmaster", "", "SOA contact as a domain name (default hostmaster.<domain>)")
	fs.StringArrayVar(&z.federations, "federation", nil, "federation whose short names <svc>.<ns>.<federation> are served even before it has services (repeatable)")
}

func (z *zoneFlags) config() (zone.Config, error) {
	if z.domain == "" {
		return zone.Config{}, errors.New("--domain is required")
	}
	cfg := zone.Config{Domain: z.domain, DefaultTTL: z.ttl, NegativeTTL: z.negativeTTL, Hostmaster: z.hostmaster, Federations: z.federations}
	for _, ns := range z.nameservers {
		name, ips, _ := strings.Cut(ns, "=")
		n := zone.Nameserver{Name: name}
		if ips != "" {
			for _, ip := range strings.Split(ips, ",") {
				a, err := netip.ParseAddr(ip)
				if err != nil {
					return zone.Config{}, fmt.Errorf("--nameserver %s: %w", ns, err)
				}
				n.Addresses = append(n.Addresses, a)
			}
		}
		cfg.Nameservers = append(cfg.Nameservers, n)
	}
	return cfg, cfg.Validate()
}

type serveOptions struct {
	zone           zoneFlags
	rrl            server.RRLConfig
	rrlExempt      []string
	maxTCPConns    int
	tcpIdleTimeout time.Duration
	metricsAddr    string
	healthAddr     string
	ownershipKey   string
	listen         []string
	clusterListen  []string
	clusterSource  []string
	clusterLocs    []string
	maxUDPSize     int
	udpSockets     int
	fromFile       string
	interval       time.Duration
	allowEmpty     bool
	owner          string
	rfcServer      string
	rfcZone        string
	rfcKeyName     string
	rfcKeyAlg      string
	rfcSecretFile  string
	broker         *kubeconfig.Other
	federation     federation.Config
	epNamespace    string
	epCluster      *kubeconfig.Flags
	publishTimeout time.Duration
}

func newServe() *cobra.Command {
	o := &serveOptions{}
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the authoritative DNS server of the federation domain, and its publishers",
		Example: "  strait dns serve --domain example.com --listen 127.0.0.1:5353 --from-file services.yaml\n" +
			"  strait dns serve --domain example.com --listen :53 --from-file services.yaml \\\n" +
			"      --cluster-source cluster01=10.1.0.0/16 --cluster-source cluster02=10.2.0.0/16 \\\n" +
			"      --rfc2136-server 192.0.2.53:53 --rfc2136-zone example.com \\\n" +
			"      --rfc2136-key-name strait --rfc2136-key-secret-file /etc/strait/tsig.key",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return o.run(cmd.Context()) },
	}
	fs := cmd.Flags()
	o.zone.add(fs)
	fs.StringArrayVar(&o.listen, "listen", nil, "address to serve on, UDP and TCP (repeatable; default :53 unless --cluster-listen is given)")
	fs.StringArrayVar(&o.clusterListen, "cluster-listen", nil, "CLUSTER=ADDRESS: a listener for the CoreDNS of one member cluster; short names are answered for that cluster (repeatable)")
	fs.StringArrayVar(&o.clusterSource, "cluster-source", nil, "CLUSTER=PREFIX: queries from PREFIX come from that member cluster (repeatable)")
	fs.StringArrayVar(&o.clusterLocs, "cluster-location", nil, "CLUSTER=REGION[/ZONE]: location of a member cluster without shards (repeatable)")
	fs.IntVar(&o.maxUDPSize, "max-udp-size", server.DefaultMaxUDPSize, "EDNS(0) UDP payload size offered; larger answers are truncated over UDP")
	fs.IntVar(&o.udpSockets, "udp-sockets", 0, "SO_REUSEPORT UDP sockets per listener (default: one per CPU)")
	fs.StringVar(&o.fromFile, "from-file", "", "read the federated services from this YAML file, re-read every --interval (see docs/dns.md)")
	o.epCluster = kubeconfig.AddFlags(cmd, kubeconfig.Options{
		Cluster:         "the cluster for DNSEndpoint objects",
		KubeconfigUsage: "kubeconfig of the cluster for DNSEndpoint objects (default: $KUBECONFIG or ~/.kube/config)",
	})
	o.broker = o.epCluster.AddOther(cmd, kubeconfig.OtherOptions{
		ContextFlag:     "broker-context",
		ContextUsage:    "read the federated services and their shards from the broker: its kubeconfig context (a member's broker credential is enough)",
		KubeconfigFlag:  "broker-kubeconfig",
		KubeconfigUsage: "kubeconfig of --broker-context (default: --kubeconfig, else $KUBECONFIG or ~/.kube/config)",
	})
	o.federation = federation.DefaultConfig()
	o.federation.AddFlags(fs)
	fs.DurationVar(&o.interval, "interval", dnspkg.DefaultInterval, "how often the services are read")
	fs.BoolVar(&o.allowEmpty, "allow-empty", false, "treat an empty service list as real: empty the zone and delete published records")
	fs.StringVar(&o.owner, "owner", "", "owner ID written in ownership records and labels; publishers with another owner are never touched (default with --broker-context: strait-<hash of the broker's kube-system namespace UID and --domain>, unique per clusterset and domain; required with --from-file when publishing)")
	fs.StringVar(&o.ownershipKey, "ownership-key-file", "", "file holding the base64 key (at least 16 bytes) that signs RFC 2136 ownership records (default: derived from the TSIG secret with HKDF-SHA256)")
	fs.IntVar(&o.rrl.ResponsesPerSecond, "rrl-responses-per-second", 1000, "response rate limit: UDP responses per second to one client prefix; 0 turns this limit off")
	fs.IntVar(&o.rrl.BytesPerSecond, "rrl-bytes-per-second", 0, "response rate limit: bytes of UDP responses per second to one client prefix; 0 turns this limit off")
	fs.DurationVar(&o.rrl.Window, "rrl-window", server.DefaultRRLWindow, "how much of the rate a client prefix may spend at once")
	fs.IntVar(&o.rrl.Slip, "rrl-slip", 2, "every Nth response over the limit is sent truncated (TC=1) so real clients retry over TCP; the others are dropped; 0 drops all")
	fs.IntVar(&o.rrl.IPv4PrefixLength, "rrl-ipv4-prefix-length", server.DefaultRRLIPv4PrefixLength, "IPv4 clients are limited together per prefix of this length")
	fs.IntVar(&o.rrl.IPv6PrefixLength, "rrl-ipv6-prefix-length", server.DefaultRRLIPv6PrefixLength, "IPv6 clients are limited together per prefix of this length")
	fs.StringSliceVar(&o.rrlExempt, "rrl-exempt", nil, "client prefixes never rate limited, comma-separated (member clusters' --cluster-source prefixes and --cluster-listen listeners always are)")
	fs.IntVar(&o.maxTCPConns, "max-tcp-connections", server.DefaultMaxTCPConnections, "concurrent TCP connections over all listeners; more are closed at once; -1: no cap")
	fs.DurationVar(&o.tcpIdleTimeout, "tcp-idle-timeout", server.DefaultTCPIdleTimeout, "close a TCP connection that sends no query for this long")
	fs.StringVar(&o.metricsAddr, "metrics-bind-address", "0", "address of the Prometheus /metrics endpoint, e.g. :9153; 0 disables it")
	fs.StringVar(&o.healthAddr, "health-probe-bind-address", "0", "address of /healthz and /readyz (ready once the federated services were read), e.g. :8081; 0 disables them")
	fs.StringVar(&o.rfcServer, "rfc2136-server", "", "publish with RFC 2136 dynamic updates to this primary server, HOST:PORT")
	fs.StringVar(&o.rfcZone, "rfc2136-zone", "", "zone to update (default: --domain)")
	fs.StringVar(&o.rfcKeyName, "rfc2136-key-name", "", "TSIG key name")
	fs.StringVar(&o.rfcKeyAlg, "rfc2136-key-algorithm", "hmac-sha256", "TSIG algorithm")
	fs.StringVar(&o.rfcSecretFile, "rfc2136-key-secret-file", "", "file holding the base64 TSIG secret")
	fs.StringVar(&o.epNamespace, "dnsendpoint-namespace", "", "publish DNSEndpoint objects for ExternalDNS in this namespace")
	fs.DurationVar(&o.publishTimeout, "publish-timeout", 30*time.Second, "time limit of one publish")
	return cmd
}

func (o *serveOptions) serverConfig() (server.Config, error) {
	zcfg, err := o.zone.config()
	if err != nil {
		return server.Config{}, err
	}
	cfg := server.Config{Zone: zcfg, MaxUDPSize: o.maxUDPSize, UDPSockets: o.udpSockets, RRL: o.rrl,
		MaxTCPConnections: o.maxTCPConns, TCPIdleTimeout: o.tcpIdleTimeout}
	for _, e := range o.rrlExempt {
		p, err := netip.ParsePrefix(e)
		if err != nil {
			return cfg, fmt.Errorf("--rrl-exempt %q: want a prefix such as 192.0.2.0/24", e)
		}
		cfg.RRL.Exempt = append(cfg.RRL.Exempt, p)
	}
	listen := o.listen
	if len(listen) == 0 && len(o.clusterListen) == 0 {
		listen = []string{":53"}
	}
	for _, l := range listen {
		cfg.Listeners = append(cfg.Listeners, server.Listener{Addr: l})
	}
	for _, cl := range o.clusterListen {
		cluster, addr, ok := strings.Cut(cl, "=")
		if !ok || cluster == "" || addr == "" {
			return cfg, fmt.Errorf("--cluster-listen %q: want CLUSTER=ADDRESS", cl)
		}
		cfg.Listeners = append(cfg.Listeners, server.Listener{Addr: addr, Cluster: cluster})
	}
	for _, cs := range o.clusterSource {
		cluster, prefix, ok := strings.Cut(cs, "=")
		p, err := netip.ParsePrefix(prefix)
		if !ok || cluster == "" || err != nil {
			return cfg, fmt.Errorf("--cluster-source %q: want CLUSTER=PREFIX (e.g. cluster01=10.1.0.0/16)", cs)
		}
		cfg.Sources = append(cfg.Sources, server.Source{Prefix: p, Cluster: cluster})
	}
	for _, cl := range o.clusterLocs {
		cluster, loc, ok := strings.Cut(cl, "=")
		region, zn, _ := strings.Cut(loc, "/")
		if !ok || cluster == "" || region == "" {
			return cfg, fmt.Errorf("--cluster-location %q: want CLUSTER=REGION[/ZONE]", cl)
		}
		cfg.Clusters = append(cfg.Clusters, zone.Location{Cluster: cluster, Region: region, Zone: zn})
	}
	if len(zcfg.Nameservers) == 0 {
		// Glue for the default nameserver: the first specific listen address.
		for _, l := range cfg.Listeners {
			host, _, err := net.SplitHostPort(l.Addr)
			if a, perr := netip.ParseAddr(host); err == nil && perr == nil && !a.IsUnspecified() {
				cfg.Zone.Nameservers = []zone.Nameserver{{Name: "ns." + strings.TrimSuffix(zcfg.Domain, "."), Addresses: []netip.Addr{a}}}
				break
			}
		}
	}
	return cfg, nil
}

// publishing reports whether any publisher is configured.
func (o *serveOptions) publishing() bool { return o.rfcServer != "" || o.epNamespace != "" }

// ownershipKeyFor returns the key that signs RFC 2136 ownership records: --ownership-key-file,
// else one derived from the TSIG secret (see rfc2136.DeriveOwnershipKey), and where it
// came from.
func (o *serveOptions) ownershipKeyFor(tsigSecret string) ([]byte, string, error) {
	if o.ownershipKey == "" {
		key, err := rfc2136.DeriveOwnershipKey(tsigSecret)
		return key, "derived from the TSIG secret", err
	}
	raw, err := os.ReadFile(o.ownershipKey)
	if err != nil {
		return nil, "", fmt.Errorf("--ownership-key-file: %w", err)
	}
	key, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(raw)))
	if err != nil || len(key) < rfc2136.MinOwnershipKeyLength {
		return nil, "", fmt.Errorf("--ownership-key-file %s: want at least %d random bytes, base64 encoded (e.g. `openssl rand -base64 32`)", o.ownershipKey, rfc2136.MinOwnershipKeyLength)
	}
	return key, "--ownership-key-file", nil
}

func (o *serveOptions) publishers(ctx context.Context, domain string) ([]dnspkg.Publisher, error) {
	var out []dnspkg.Publisher
	if o.rfcServer != "" {
		secret, err := os.ReadFile(o.rfcSecretFile)
		if err != nil {
			return nil, fmt.Errorf("--rfc2136-key-secret-file: %w", err)
		}
		z := o.rfcZone
		if z == "" {
			z = domain
		}
		key, from, err := o.ownershipKeyFor(string(secret))
		if err != nil {
			return nil, err
		}
		p, err := rfc2136.New(rfc2136.Config{Server: o.rfcServer, Zone: z, Domain: domain, KeyName: o.rfcKeyName, Algorithm: o.rfcKeyAlg,
			Secret: strings.TrimSpace(string(secret)), Owner: o.owner, OwnershipKey: key})
		if err != nil {
			return nil, err
		}
		klog.FromContext(ctx).Info("Publishing with RFC 2136", "server", o.rfcServer, "zone", z, "domain", domain, "owner", o.owner, "ownershipKey", from)
		out = append(out, &publisher{name: "rfc2136 " + o.rfcServer + " zone " + z, timeout: o.publishTimeout,
			publish: func(ctx context.Context, records []zone.Record, allowEmpty bool) ([]string, error) {
				res, err := p.Publish(ctx, records, rfc2136.Options{AllowEmpty: allowEmpty})
				return res.Conflicts, err
			}})
	}
	if o.epNamespace != "" {
		cfg, _, err := o.epCluster.RESTConfig()
		if err != nil {
			return nil, err
		}
		cfg.UserAgent = "strait-dns" // its field manager on the DNSEndpoints it writes
		client, err := dynamic.NewForConfig(cfg)
		if err != nil {
			return nil, err
		}
		p, err := dnsendpoint.New(client, dnsendpoint.Config{Namespace: o.epNamespace, Owner: o.owner, Domain: domain})
		if err != nil {
			return nil, err
		}
		klog.FromContext(ctx).Info("Publishing DNSEndpoints", "namespace", o.epNamespace, "domain", domain, "owner", o.owner)
		out = append(out, &publisher{name: "dnsendpoint " + o.epNamespace, timeout: o.publishTimeout,
			publish: func(ctx context.Context, records []zone.Record, allowEmpty bool) ([]string, error) {
				res, err := p.Publish(ctx, records, dnsendpoint.Options{AllowEmpty: allowEmpty})
				if len(res.Ignored) > 0 {
					klog.FromContext(ctx).Info("DNSEndpoints with our labels that are not ours were left alone", "names", res.Ignored)
				}
				return res.Conflicts, err
			}})
	}
	return out, nil
}

func (o *serveOptions) run(ctx context.Context) error {
	useBroker := o.broker.Given()
	switch {
	case o.fromFile == "" && !useBroker:
		return errors.New("no source of federated services: give --broker-context (the clusterset's broker) or --from-file")
	case o.fromFile != "" && useBroker:
		return errors.New("give either --from-file or --broker-context/--broker-kubeconfig, not both")
	}
	if o.fromFile != "" && o.publishing() && o.owner == "" {
		return errors.New("--owner is required with --from-file when publishing: give an owner ID unique to this installation and domain (with --broker-context it is derived from the clusterset)")
	}
	cfg, err := o.serverConfig()
	if err != nil {
		return err
	}
	var source dnspkg.Source = dnspkg.FileSource{Path: o.fromFile}
	var collectors []prometheus.Collector
	if useBroker {
		broker, brokerMCS, err := o.brokerClients(ctx)
		if err != nil {
			return err
		}
		if o.owner == "" && o.publishing() {
			if o.owner, err = dnspkg.DefaultOwner(ctx, broker, cfg.Zone.Domain); err != nil {
				return err
			}
		}
		if err := o.federation.Validate(); err != nil {
			return err
		}
		src, view, err := dnspkg.BrokerSource(ctx, broker, brokerMCS, o.federation, &cfg)
		if err != nil {
			return err
		}
		source, collectors = src, append(collectors, view)
	}
	pubs, err := o.publishers(ctx, cfg.Zone.Domain)
	if err != nil {
		return err
	}
	return dnspkg.Serve(ctx, dnspkg.ServeConfig{Server: cfg, Source: source, Publishers: pubs, Interval: o.interval, AllowEmpty: o.allowEmpty,
		MetricsAddress: o.metricsAddr, HealthAddress: o.healthAddr, Collectors: collectors})
}

// publisher adapts one publisher to the runner: a name for logs, a time limit per publish,
// and a log line for names someone else holds.
type publisher struct {
	name    string
	timeout time.Duration
	publish func(ctx context.Context, records []zone.Record, allowEmpty bool) (conflicts []string, err error)
}

func (p *publisher) Name() string { return p.name }
func (p *publisher) Publish(ctx context.Context, records []zone.Record, allowEmpty bool) error {
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	conflicts, err := p.publish(ctx, records, allowEmpty)
	logConflicts(ctx, p.name, conflicts)
	return err
}

func logConflicts(ctx context.Context, publisher string, conflicts []string) {
	if len(conflicts) > 0 {
		klog.FromContext(ctx).Info("Names held by someone else were left alone", "publisher", publisher, "names", conflicts)
	}
}

func newZonefile() *cobra.Command {
	var z zoneFlags
	var fromFile string
	cmd := &cobra.Command{
		Use:   "zonefile",
		Short: "Print the federation domain's records as a zone file",
		Long: "Prints SOA, NS and every global, region and zone record of the services in --from-file,\n" +
			"as strait dns serve answers them, in RFC 1035 master format (e.g. for CoreDNS's file\n" +
			"plugin or a BIND zone).",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := z.config()
			if err != nil {
				return err
			}
			if fromFile == "" {
				return errors.New("--from-file is required")
			}
			services, err := dnspkg.FileSource{Path: fromFile}.Services(cmd.Context())
			if err != nil {
				return err
			}
			zn, err := zone.Build(cfg, services, uint32(time.Now().Unix()))
			if err != nil {
				return err
			}
			_, err = fmt.Fprint(cmd.OutOrStdout(), zn.ZoneFile())
			return err
		},
	}
	z.add(cmd.Flags())
	cmd.Flags().StringVar(&fromFile, "from-file", "", "the services file (see strait dns serve)")
	return cmd
}

// brokerClients are the clients of the broker named by the flags, from which the
// federated Services, members, leases and shard records are read. They follow the
// kubeconfig's token, so the member's broker credential, mounted from its Secret and
// renewed there by the agent, keeps a long-running server authenticated.
func (o *serveOptions) brokerClients(ctx context.Context) (kubernetes.Interface, mcsclient.Interface, error) {
	rc, _, err := o.broker.FollowedRESTConfig(ctx)
	if err != nil {
		return nil, nil, err
	}
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, nil, err
	}
	mcs, err := mcsclient.NewForConfig(rc)
	if err != nil {
		return nil, nil, err
	}
	return cs, mcs, nil
}
