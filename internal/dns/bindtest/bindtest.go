// Package bindtest runs a real BIND 9 (Debian's bind9 package: named, and dig from
// bind9-dnsutils) for tests: one primary zone on 127.0.0.1 and a free port, in a temporary
// directory, that accepts TSIG-signed dynamic updates and zone transfers. A second key may
// only update TXT records, as the keys ACME DNS-01 clients hold.
package bindtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Server is a running named.
type Server struct {
	// Addr is host:port of the server (UDP and TCP).
	Addr string
	Host string
	Port int
	// Zone is the zone served (absolute).
	Zone string
	// KeyName, Algorithm and Secret make the TSIG key allowed to update and transfer.
	KeyName, Algorithm, Secret string
	// TXTKeyName and TXTSecret make a key (same algorithm) that may update TXT records
	// anywhere in the zone and nothing else.
	TXTKeyName, TXTSecret string

	t   testing.TB
	log *syncBuffer
}

// Options configure a server.
type Options struct {
	// Zone is the zone's name (default "example.com").
	Zone string
	// Records are extra zone-file lines, relative to the zone (e.g. "www IN A 192.0.2.80").
	Records []string
}

// Start runs named with a zone and stops it when the test ends. It fails the test when named
// is not installed: the RFC 2136 tests need a real server.
func Start(t testing.TB, o Options) *Server {
	t.Helper()
	named, err := exec.LookPath("named")
	if err != nil {
		if named, err = exec.LookPath("/usr/sbin/named"); err != nil {
			t.Fatalf("named (Debian package bind9) is needed for the RFC 2136 tests: %v", err)
		}
	}
	if o.Zone == "" {
		o.Zone = "example.com"
	}
	secret, txtSecret := make([]byte, 32), make([]byte, 32)
	rand.Read(secret)
	rand.Read(txtSecret)
	s := &Server{Host: "127.0.0.1", Zone: strings.TrimSuffix(o.Zone, ".") + ".", KeyName: "strait-test",
		Algorithm: "hmac-sha256", Secret: base64.StdEncoding.EncodeToString(secret),
		TXTKeyName: "txt-only-test", TXTSecret: base64.StdEncoding.EncodeToString(txtSecret), t: t}
	var lastErr error
	for range 5 { // a free port found now can be taken before named binds it
		port, err := FreePort(s.Host)
		if err != nil {
			t.Fatal(err)
		}
		s.Port = port
		s.Addr = net.JoinHostPort(s.Host, strconv.Itoa(port))
		if lastErr = s.run(t, named, o); lastErr == nil {
			return s
		}
	}
	t.Fatalf("starting named: %v", lastErr)
	return nil
}

func (s *Server) run(t testing.TB, named string, o Options) error {
	dir := t.TempDir()
	zoneFile := filepath.Join(dir, "zone.db")
	zoneText := fmt.Sprintf("$TTL 300\n@ IN SOA ns1.%[1]s hostmaster.%[1]s 1 3600 600 86400 30\n@ IN NS ns1.%[1]s\nns1 IN A 127.0.0.1\n%s\n",
		s.Zone, strings.Join(o.Records, "\n"))
	if err := os.WriteFile(zoneFile, []byte(zoneText), 0o644); err != nil {
		return err
	}
	conf := fmt.Sprintf(`options {
	directory %[1]q;
	pid-file %[2]q;
	session-keyfile %[3]q;
	listen-on port %[4]d { 127.0.0.1; };
	listen-on-v6 { none; };
	recursion no;
	dnssec-validation no;
	notify no;
};
controls { };
key %[5]q { algorithm %[6]s; secret %[7]q; };
key %[10]q { algorithm %[6]s; secret %[11]q; };
zone %[8]q {
	type primary;
	file %[9]q;
	update-policy {
		grant %[5]q zonesub ANY;
		grant %[10]q zonesub TXT;
	};
	allow-transfer { key %[5]q; };
};
`, dir, filepath.Join(dir, "named.pid"), filepath.Join(dir, "session.key"), s.Port, s.KeyName, s.Algorithm, s.Secret,
		strings.TrimSuffix(s.Zone, "."), zoneFile, s.TXTKeyName, s.TXTSecret)
	confFile := filepath.Join(dir, "named.conf")
	if err := os.WriteFile(confFile, []byte(conf), 0o644); err != nil {
		return err
	}
	args := []string{"-g", "-c", confFile}
	if os.Geteuid() == 0 {
		args = append(args, "-u", "root") // stay root: the temporary directory is root's
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, named, args...)
	s.log = &syncBuffer{}
	cmd.Stdout, cmd.Stderr = s.log, s.log
	if err := cmd.Start(); err != nil {
		cancel()
		return err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stop := func() {
		cancel()
		<-exited
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, err := s.dig("+tcp", s.Zone, "SOA"); err == nil && strings.Contains(s.log.String(), "running") {
			break
		}
		select {
		case err := <-exited:
			exited <- err
			stop()
			return fmt.Errorf("named exited (%v): %s", err, s.log.String())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			stop()
			return fmt.Errorf("named did not answer within 20s: %s", s.log.String())
		}
	}
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			t.Logf("named log:\n%s", s.log.String())
		}
	})
	return nil
}

// FreePort returns a port free for both UDP and TCP on host.
func FreePort(host string) (int, error) {
	for range 20 {
		l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
		if err != nil {
			return 0, err
		}
		port := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", net.JoinHostPort(host, strconv.Itoa(port)))
		l.Close()
		if err == nil {
			u.Close()
			return port, nil
		}
	}
	return 0, fmt.Errorf("no free port on %s", host)
}

// Dig queries the server with dig (no recursion) and returns the answer section, one
// record a line as "name ttl class type data" with single spaces, sorted (BIND rotates the
// order of an RRset's records).
func (s *Server) Dig(name, qtype string) []string {
	s.t.Helper()
	out, err := s.dig("+noall", "+answer", name, qtype)
	if err != nil {
		s.t.Fatalf("dig %s %s: %v", name, qtype, err)
	}
	slices.Sort(out)
	return out
}

// Status returns the rcode dig reports (NOERROR, NXDOMAIN, ...).
func (s *Server) Status(name, qtype string) string {
	s.t.Helper()
	out, err := s.run1("dig", "+norecurse", "+time=2", "+tries=2", "@"+s.Host, "-p", strconv.Itoa(s.Port), name, qtype)
	if err != nil {
		s.t.Fatalf("dig: %v", err)
	}
	if m := regexp.MustCompile(`status: ([A-Z]+)`).FindStringSubmatch(out); m != nil {
		return m[1]
	}
	s.t.Fatalf("no status in dig output: %s", out)
	return ""
}

// AXFR returns the whole zone as dig prints it (signed transfer), without the TSIG record,
// sorted.
func (s *Server) AXFR() []string {
	s.t.Helper()
	out, err := s.dig("-y", s.Algorithm+":"+s.KeyName+":"+s.Secret, "+noall", "+answer", s.Zone, "AXFR")
	if err != nil {
		s.t.Fatalf("dig AXFR: %v", err)
	}
	var keep []string
	for _, l := range out {
		if !strings.Contains(l, " TSIG ") {
			keep = append(keep, l)
		}
	}
	slices.Sort(keep)
	return keep
}

// NSUpdate runs nsupdate with the zone's key and the given commands (without "send").
func (s *Server) NSUpdate(commands ...string) {
	s.t.Helper()
	script := fmt.Sprintf("server %s %d\nzone %s\n%s\nsend\n", s.Host, s.Port, s.Zone, strings.Join(commands, "\n"))
	cmd := exec.Command("nsupdate", "-y", s.Algorithm+":"+s.KeyName+":"+s.Secret)
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		s.t.Fatalf("nsupdate: %v: %s", err, out)
	}
}

// NSUpdateTXTOnly runs nsupdate with the TXT-only key and returns its error: the server
// refuses (REFUSED) any change to another type.
func (s *Server) NSUpdateTXTOnly(commands ...string) error {
	s.t.Helper()
	script := fmt.Sprintf("server %s %d\nzone %s\n%s\nsend\n", s.Host, s.Port, s.Zone, strings.Join(commands, "\n"))
	cmd := exec.Command("nsupdate", "-y", s.Algorithm+":"+s.TXTKeyName+":"+s.TXTSecret)
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("nsupdate: %w: %s", err, out)
	}
	return nil
}

func (s *Server) dig(args ...string) ([]string, error) {
	all := append([]string{"+norecurse", "+time=2", "+tries=2", "@" + s.Host, "-p", strconv.Itoa(s.Port)}, args...)
	out, err := s.run1("dig", all...)
	if err != nil {
		return nil, err
	}
	if strings.Contains(out, "communications error") || strings.Contains(out, "connection refused") ||
		strings.Contains(out, "Transfer failed") || strings.Contains(out, "timed out") {
		return nil, fmt.Errorf("dig %s: %s", strings.Join(args, " "), out)
	}
	var lines []string
	for _, l := range strings.Split(out, "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, ";") {
			continue
		}
		lines = append(lines, strings.Join(strings.Fields(l), " "))
	}
	return lines, nil
}

func (s *Server) run1(name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// syncBuffer is a bytes.Buffer safe for the process's writes and the test's reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
