package pki

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net"
	"testing"
)

func parse(t *testing.T, certPEM []byte) *x509.Certificate {
	t.Helper()
	block, _ := pem.Decode(certPEM)
	if block == nil {
		t.Fatal("no PEM block")
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestIssuedCertificatesVerifyAgainstTheirCA(t *testing.T) {
	ca, err := NewCA("test-ca")
	if err != nil {
		t.Fatal(err)
	}
	serving, err := ca.Issue(Request{CommonName: "kube-apiserver", Server: true,
		DNSNames: []string{"kubernetes.default.svc"}, IPs: []net.IP{net.ParseIP("10.254.0.11")}})
	if err != nil {
		t.Fatal(err)
	}
	client, err := ca.Issue(Request{CommonName: "admin", Organizations: []string{"system:masters"}})
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)

	sc := parse(t, serving.CertPEM)
	if _, err := sc.Verify(x509.VerifyOptions{Roots: pool, DNSName: "kubernetes.default.svc"}); err != nil {
		t.Errorf("serving certificate does not verify for its DNS name: %v", err)
	}
	if err := sc.VerifyHostname("10.254.0.11"); err != nil {
		t.Errorf("serving certificate lacks its IP: %v", err)
	}
	cc := parse(t, client.CertPEM)
	if _, err := cc.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("client certificate does not verify for client auth: %v", err)
	}
	if _, err := cc.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err == nil {
		t.Error("a client certificate must not be usable to serve")
	}
	if cc.Subject.CommonName != "admin" || len(cc.Subject.Organization) != 1 || cc.Subject.Organization[0] != "system:masters" {
		t.Errorf("client subject = %v, want CN=admin O=system:masters (user and group for RBAC)", cc.Subject)
	}
	if _, err := tls.X509KeyPair(client.CertPEM, client.KeyPEM); err != nil {
		t.Errorf("client key pair unusable: %v", err)
	}
}

func TestCAKeyPairRoundTrips(t *testing.T) {
	ca, err := NewCA("test-ca")
	if err != nil {
		t.Fatal(err)
	}
	kp, err := ca.KeyPair()
	if err != nil {
		t.Fatal(err)
	}
	loaded, err := LoadCA(kp)
	if err != nil {
		t.Fatal(err)
	}
	issued, err := loaded.Issue(Request{CommonName: "x"})
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	if _, err := parse(t, issued.CertPEM).Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		t.Errorf("certificate issued by the reloaded CA does not verify against the original: %v", err)
	}
}
