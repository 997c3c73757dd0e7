package credential

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/strait-io/strait/internal/clusterset"
)

var t0 = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

// jwt is a token with an exp claim, as the broker issues them (unsigned: the agent never
// verifies it, the broker does).
func jwt(exp time.Time) string {
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(`{"alg":"RS256"}`)) + "." + enc([]byte(fmt.Sprintf(`{"exp":%d}`, exp.Unix()))) + ".sig"
}

func stored(t *testing.T, cred clusterset.BrokerCredential) *corev1.Secret {
	t.Helper()
	data, err := cred.Kubeconfig("c1")
	if err != nil {
		t.Fatal(err)
	}
	return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: clusterset.BrokerSecretName, Namespace: clusterset.SystemNamespace},
		Data: map[string][]byte{clusterset.BrokerSecretKey: data}}
}

func good(token string) clusterset.BrokerCredential {
	return clusterset.BrokerCredential{Server: "https://broker.example:6443", CAData: []byte("ca"), Token: token, Expiry: clusterset.TokenExpiry(token)}
}

// hostile is a kubeconfig that runs a command and reads a local file as a token.
const hostile = `apiVersion: v1
kind: Config
current-context: b
clusters: [{name: b, cluster: {server: "https://evil.example", insecure-skip-tls-verify: true}}]
users: [{name: u, user: {tokenFile: /var/run/secrets/kubernetes.io/serviceaccount/token, exec: {command: /bin/sh, apiVersion: client.authentication.k8s.io/v1}}}]
contexts: [{name: b, context: {cluster: b, user: u}}]
`

func TestLoadRefusesAHostileCredentialNamingTheFields(t *testing.T) {
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: clusterset.BrokerSecretName, Namespace: clusterset.SystemNamespace},
		Data: map[string][]byte{clusterset.BrokerSecretKey: []byte(hostile)}}
	_, err := Load(context.Background(), fake.NewClientset(secret), "c1", false)
	for _, want := range []string{".exec", ".tokenFile", "insecure-skip-tls-verify", "strait-system/strait-broker"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Load(hostile) = %v, want an error naming %q", err, want)
		}
	}
}

// Every broker request carries the holder's current token, also after it changed.
func TestRequestsCarryTheCurrentToken(t *testing.T) {
	var got []string
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = append(got, r.Header.Get("Authorization"))
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"kind":"Namespace","apiVersion":"v1","metadata":{"name":"kube-system"}}`)
	}))
	defer srv.Close()
	h := &Holder{ClusterID: "c1", AllowInsecure: true, cred: clusterset.BrokerCredential{Server: srv.URL, Insecure: true, Token: "one"}}
	cs, err := kubernetes.NewForConfig(h.RESTConfig())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	_, _ = cs.CoreV1().Namespaces().Get(ctx, "kube-system", metav1.GetOptions{})
	h.mu.Lock()
	h.cred.Token = "two"
	h.mu.Unlock()
	_, _ = cs.CoreV1().Namespaces().Get(ctx, "kube-system", metav1.GetOptions{})
	if len(got) != 2 || got[0] != "Bearer one" || got[1] != "Bearer two" {
		t.Errorf("Authorization headers %q, want the token of the moment", got)
	}
}

func TestRenewerRenewsWithAThirdOfItsLifeLeft(t *testing.T) {
	ctx := context.Background()
	now := t0
	member := fake.NewClientset(stored(t, good(jwt(t0.Add(24*time.Hour)))))
	broker := fake.NewClientset()
	var asked []int64
	broker.PrependReactor("create", "serviceaccounts", func(a k8stesting.Action) (bool, runtime.Object, error) {
		ca := a.(k8stesting.CreateAction)
		if a.GetSubresource() != "token" || ca.GetNamespace() != clusterset.ClustersetNamespace {
			return false, nil, nil
		}
		tr := ca.GetObject().(*authenticationv1.TokenRequest)
		asked = append(asked, *tr.Spec.ExpirationSeconds)
		exp := now.Add(time.Duration(*tr.Spec.ExpirationSeconds) * time.Second)
		tr.Status = authenticationv1.TokenRequestStatus{Token: jwt(exp), ExpirationTimestamp: metav1.NewTime(exp)}
		return true, tr, nil
	})
	h, err := Load(ctx, member, "c1", false)
	if err != nil {
		t.Fatal(err)
	}
	h.issued = t0
	var events []string
	r := &Renewer{Holder: h, Member: member, Broker: broker, Now: func() time.Time { return now },
		Event: func(typ, reason, msg string) { events = append(events, reason+": "+msg) }}

	now = t0.Add(15 * time.Hour) // 9 h of 24 left: more than a third
	if err := r.Check(ctx); err != nil || len(asked) != 0 {
		t.Fatalf("renewed too early (%v, %v)", asked, err)
	}
	now = t0.Add(17 * time.Hour) // 7 h left: renew
	if err := r.Check(ctx); err != nil {
		t.Fatal(err)
	}
	if len(asked) != 1 || asked[0] != int64((24*time.Hour)/time.Second) {
		t.Fatalf("token requests %v, want one for 24h", asked)
	}
	if !clusterset.TokenExpiry(h.Token()).Equal(now.Add(24 * time.Hour)) {
		t.Errorf("holder token expires %v", clusterset.TokenExpiry(h.Token()))
	}
	// The renewed credential is what a restart reads, and it is still self-contained.
	again, err := Load(ctx, member, "c1", false)
	if err != nil || again.Token() != h.Token() {
		t.Errorf("stored credential after renewal: %v (%v)", again, err)
	}
	if len(events) != 1 || !strings.HasPrefix(events[0], EventRenewed) {
		t.Errorf("events %v", events)
	}
}

// A credential written into the Secret: a valid one (join re-run) is adopted, a hostile
// one is refused with an event and the agent keeps its own.
func TestRenewerAdoptsARotationAndRefusesAHostileWrite(t *testing.T) {
	ctx := context.Background()
	member := fake.NewClientset(stored(t, good(jwt(t0.Add(24*time.Hour)))))
	h, err := Load(ctx, member, "c1", false)
	if err != nil {
		t.Fatal(err)
	}
	h.issued = t0
	var events []string
	r := &Renewer{Holder: h, Member: member, Broker: fake.NewClientset(), Now: func() time.Time { return t0.Add(time.Hour) },
		Event: func(typ, reason, msg string) { events = append(events, reason+": "+msg) }}
	rotated := jwt(t0.Add(48 * time.Hour))
	if _, err := member.CoreV1().Secrets(clusterset.SystemNamespace).Update(ctx, stored(t, good(rotated)), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := r.Check(ctx); err != nil || h.Token() != rotated {
		t.Fatalf("rotation not adopted: token %q (%v)", h.Token(), err)
	}
	bad := stored(t, good(rotated))
	bad.Data[clusterset.BrokerSecretKey] = []byte(hostile)
	if _, err := member.CoreV1().Secrets(clusterset.SystemNamespace).Update(ctx, bad, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := r.Check(ctx); err != nil {
		t.Fatal(err)
	}
	if h.Token() != rotated {
		t.Error("a hostile credential replaced the agent's")
	}
	if len(events) != 1 || !strings.HasPrefix(events[0], EventRefused) || !strings.Contains(events[0], ".exec") {
		t.Errorf("events %v, want one refusal naming .exec", events)
	}
	if err := r.Check(ctx); err != nil || len(events) != 1 {
		t.Errorf("the same hostile credential reported again: %v (%v)", events, err)
	}
}
