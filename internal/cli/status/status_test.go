package status

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/strait-io/strait/internal/clusterset"
	statuspkg "github.com/strait-io/strait/internal/status"
)

// kubeconfigFor writes a kubeconfig whose context "member" points at server.
func kubeconfigFor(t *testing.T, server string) string {
	t.Helper()
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["c"] = &clientcmdapi.Cluster{Server: server}
	cfg.AuthInfos["u"] = &clientcmdapi.AuthInfo{Token: "t"}
	cfg.Contexts["member"] = &clientcmdapi.Context{Cluster: "c", AuthInfo: "u"}
	cfg.CurrentContext = "member"
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// refusingServer returns the URL of a port nothing listens on.
func refusingServer(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return "http://" + addr
}

// apiServer answers every request with handler.
func apiServer(t *testing.T, handler http.HandlerFunc) string {
	t.Helper()
	s := httptest.NewServer(handler)
	t.Cleanup(s.Close)
	return s.URL
}

// tlsServer is an API server whose certificate no CA of the kubeconfig signed.
func tlsServer(t *testing.T) string {
	t.Helper()
	s := httptest.NewTLSServer(apiStatus(http.StatusNotFound, "NotFound"))
	t.Cleanup(s.Close)
	return s.URL
}

// apiStatus answers with a Kubernetes Status of that code.
func apiStatus(code int, reason string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_, _ = w.Write([]byte(`{"kind":"Status","apiVersion":"v1","status":"Failure","message":"` + reason + `","reason":"` + reason + `","code":` + strconv.Itoa(code) + `}`))
	}
}

// clusterIDOnly has a ClusterProperty cluster ID but no broker credential: a join that
// was cut short, or a leave that was.
func clusterIDOnly(w http.ResponseWriter, r *http.Request) {
	if strings.HasSuffix(r.URL.Path, "/clusterproperties/"+clusterset.ClusterIDProperty) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"apiVersion":"about.k8s.io/v1alpha1","kind":"ClusterProperty","metadata":{"name":"` +
			clusterset.ClusterIDProperty + `"},"spec":{"value":"cluster02"}}`))
		return
	}
	apiStatus(http.StatusNotFound, "NotFound")(w, r)
}

func runStatus(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := New()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	cmd.SetArgs(args)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err := cmd.ExecuteContext(ctx)
	return out.String(), err
}

// TestUnreachableIsNotNotJoined: only an API server that answers, without the cluster's ID or
// its broker credential, makes status say the cluster has not joined; one that cannot be
// reached, does not answer or refuses the user is named, with what to check.
func TestUnreachableIsNotNotJoined(t *testing.T) {
	refused := refusingServer(t)
	for _, tc := range []struct {
		name   string
		server string
		args   []string
		want   []string
	}{
		{"connection refused", refused, nil,
			[]string{"context member, API server " + refused + ": the connection was refused: is the cluster running, and is the server address of the context right", "reading its cluster ID", "connection refused"}},
		{"no answer in time", apiServer(t, func(_ http.ResponseWriter, r *http.Request) { <-r.Context().Done() }), []string{"--request-timeout", "500ms"},
			[]string{"API server http://127.0.0.1:", "it did not answer in time: check that the cluster is running and that a firewall, VPN or proxy lets you reach it"}},
		{"unauthorized", apiServer(t, apiStatus(http.StatusUnauthorized, "Unauthorized")), nil,
			[]string{"API server http://127.0.0.1:", "it did not accept the credentials (401 Unauthorized): check the user of the context"}},
		{"certificate of an unknown CA", tlsServer(t), nil,
			[]string{"API server https://127.0.0.1:", "its TLS certificate was not accepted: check the certificate-authority data of the context's cluster", "certificate signed by unknown authority"}},
		{"forbidden", apiServer(t, apiStatus(http.StatusForbidden, "Forbidden")), nil,
			[]string{"API server http://127.0.0.1:", "the user of the context is not allowed to read this (403 Forbidden)"}},
		{"no cluster ID: not joined", apiServer(t, apiStatus(http.StatusNotFound, "NotFound")), nil,
			[]string{"context member has not joined a clusterset (run strait join)", "ClusterProperty cluster.clusterset.k8s.io not found"}},
		{"no broker credential: not joined", apiServer(t, clusterIDOnly), nil,
			[]string{"broker credential strait-system/strait-broker not found: the cluster has not joined a clusterset (run strait join)"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// -o wide is accepted: the command gets as far as the API server.
			args := append([]string{"--kubeconfig", kubeconfigFor(t, tc.server), "-o", "wide"}, tc.args...)
			_, err := runStatus(t, args...)
			if err == nil {
				t.Fatal("no error")
			}
			t.Logf("strait status: %v", err)
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not say %q:\n%v", w, err)
				}
			}
			joined := strings.Contains(err.Error(), "not joined")
			if want := strings.Contains(tc.name, "not joined"); joined != want {
				t.Errorf("error says not joined: %v, want %v:\n%v", joined, want, err)
			}
		})
	}
}

func TestOutputFormats(t *testing.T) {
	kc := kubeconfigFor(t, refusingServer(t))
	for _, format := range []string{"wide", "json", "yaml"} {
		if _, err := runStatus(t, "--kubeconfig", kc, "-o", format); err == nil || !strings.Contains(err.Error(), "connection was refused") {
			t.Errorf("-o %s: %v, want the refused connection (the format accepted)", format, err)
		}
	}
	_, err := runStatus(t, "--kubeconfig", kc, "-o", "xml")
	if want := `--output "xml" is not supported; use json, yaml or wide`; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("-o xml: %v, want %q", err, want)
	}
}

// hasRow reports whether a line of a printed table has exactly these fields.
func hasRow(out string, fields ...string) bool {
	for line := range strings.SplitSeq(out, "\n") {
		if slices.Equal(strings.Fields(line), fields) {
			return true
		}
	}
	return false
}

// TestWideTable: -o wide adds the RENEWAL SEEN column to the members' table.
func TestWideTable(t *testing.T) {
	st := &statuspkg.Status{Cluster: "cluster02", ClusterID: "cluster02", Broker: "https://127.0.0.1:16443", BrokerReachable: true,
		Members: []statuspkg.Member{{ID: "cluster01", Region: "r1", Zone: "z1", State: "Alive", Exports: 2, LastRenewal: "3s"}}}
	var table, wide bytes.Buffer
	print(&table, st, false)
	print(&wide, st, true)
	if !hasRow(table.String(), "MEMBER", "REGION", "ZONE", "STATE", "EXPORTS", "CONFLICTS", "REASON") ||
		!hasRow(table.String(), "cluster01", "r1", "z1", "Alive", "2", "0", "-") {
		t.Errorf("table:\n%s", table.String())
	}
	if !hasRow(wide.String(), "MEMBER", "REGION", "ZONE", "STATE", "EXPORTS", "CONFLICTS", "RENEWAL", "SEEN", "REASON") ||
		!hasRow(wide.String(), "cluster01", "r1", "z1", "Alive", "2", "0", "3s", "-") {
		t.Errorf("wide table:\n%s", wide.String())
	}
}
