package dashboards

import (
	"encoding/json"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/strait-io/strait/internal/agent/clusterview"
	"github.com/strait-io/strait/internal/agent/inventory"
	"github.com/strait-io/strait/internal/controller"
	"github.com/strait-io/strait/internal/dns"
	"github.com/strait-io/strait/internal/dns/server"
	"github.com/strait-io/strait/internal/dns/zone"
	"github.com/strait-io/strait/internal/federation"
	"github.com/strait-io/strait/internal/liveness"
)

// capture is a Registerer that keeps what is registered with it.
type capture struct{ collectors []prometheus.Collector }

func (c *capture) Register(col prometheus.Collector) error {
	c.collectors = append(c.collectors, col)
	return nil
}
func (c *capture) MustRegister(cols ...prometheus.Collector) {
	c.collectors = append(c.collectors, cols...)
}
func (c *capture) Unregister(prometheus.Collector) bool { return false }

var fqName = regexp.MustCompile(`fqName: "([^"]+)"`)

// registered returns the name of every metric Strait's components register, from the
// collectors themselves (their descriptions), and whether each is a histogram.
func registered(t *testing.T) map[string]bool {
	t.Helper()
	c := &capture{}
	if _, err := controller.NewMetrics(c); err != nil {
		t.Fatal(err)
	}
	if _, err := dns.NewRunnerMetrics(c); err != nil {
		t.Fatal(err)
	}
	c.MustRegister(
		clusterview.Collector(func() *liveness.Tracker { return nil }),
		&inventory.Collector{},
		federation.Collector{},
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	names := map[string]bool{}
	for _, col := range c.collectors {
		ch := make(chan *prometheus.Desc, 100)
		go func() { col.Describe(ch); close(ch) }()
		for d := range ch {
			m := fqName.FindStringSubmatch(d.String())
			if m == nil {
				t.Fatalf("no name in %s", d)
			}
			_, histogram := col.(*prometheus.HistogramVec)
			names[m[1]] = histogram
		}
	}
	// The DNS server's metrics are all there from the start: gather them.
	srv, err := server.New(server.Config{Zone: zone.Config{Domain: "example.com"}})
	if err != nil {
		t.Fatal(err)
	}
	mfs, err := srv.Metrics().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		names[mf.GetName()] = mf.GetType().String() == "HISTOGRAM"
	}
	return names
}

type dashboard struct {
	Templating struct {
		List []struct{ Name, Type, Query string }
	}
	Panels []panel
}

type panel struct {
	Type       string
	Title      string
	Datasource *struct{ Type, UID string }
	Targets    []struct {
		Expr       string
		Datasource *struct{ Type, UID string }
	}
	Panels []panel
}

var identifier = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*`)

// metricNames returns the identifiers of expr that name Strait's or the Go runtime's
// metrics (label names, functions and keywords do not start like these).
func metricNames(expr string) []string {
	var out []string
	for _, id := range identifier.FindAllString(expr, -1) {
		if strings.HasPrefix(id, "strait_") || strings.HasPrefix(id, "go_") || strings.HasPrefix(id, "process_") {
			out = append(out, id)
		}
	}
	return out
}

// TestDashboardMatchesTheMetrics: every panel queries metrics Strait registers, through
// the ${datasource} variable, and every Strait metric has a panel.
func TestDashboardMatchesTheMetrics(t *testing.T) {
	var d dashboard
	if err := json.Unmarshal(Strait, &d); err != nil {
		t.Fatalf("strait.json: %v", err)
	}
	hasVar := false
	for _, v := range d.Templating.List {
		hasVar = hasVar || v.Name == "datasource" && v.Type == "datasource" && v.Query == "prometheus"
	}
	if !hasVar {
		t.Error("no ${datasource} variable of type datasource (prometheus)")
	}
	names := registered(t)
	shown := map[string]bool{}
	var visit func(ps []panel)
	visit = func(ps []panel) {
		for _, p := range ps {
			visit(p.Panels)
			if p.Type == "row" {
				continue
			}
			if p.Datasource == nil || p.Datasource.UID != "${datasource}" {
				t.Errorf("panel %q: data source %+v, want ${datasource}", p.Title, p.Datasource)
			}
			if len(p.Targets) == 0 {
				t.Errorf("panel %q has no query", p.Title)
			}
			for _, tg := range p.Targets {
				if tg.Datasource != nil && tg.Datasource.UID != "${datasource}" {
					t.Errorf("panel %q: query data source %+v, want ${datasource}", p.Title, tg.Datasource)
				}
				for _, n := range metricNames(tg.Expr) {
					base := n
					if _, ok := names[n]; !ok {
						for _, suffix := range []string{"_bucket", "_sum", "_count"} {
							if b, ok := strings.CutSuffix(n, suffix); ok && names[b] {
								base = b
							}
						}
					}
					if _, ok := names[base]; !ok {
						t.Errorf("panel %q queries %s, which no Strait component registers", p.Title, n)
					}
					shown[base] = true
				}
			}
		}
	}
	visit(d.Panels)
	var missing []string
	for n := range names {
		if strings.HasPrefix(n, "strait_") && !shown[n] {
			missing = append(missing, n)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("metrics without a panel: %s", strings.Join(missing, ", "))
	}
}
