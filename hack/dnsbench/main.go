// Command dnsbench is the helper of hack/bench-dns.sh (`make bench-dns`):
//
//	dnsbench bare -listen ADDR
//	    the peer to beat: a bare miekg/dns server whose handler answers every query with one
//	    fixed A record (the question's name, 10.0.0.1), served the way miekg/dns serves by
//	    default (one UDP socket, a goroutine per query, unpack and pack).
//	dnsbench profile -listen ADDR -from-file F -cpuprofile OUT [-domain D]
//	    strait dns's server (internal/dns/server, as `strait dns serve` runs it, RRL off)
//	    answering the services of F, writing a CPU profile from start until SIGINT/SIGTERM.
//	dnsbench memory -from-file F [-domain D]
//	    the names of the zone F makes and the live heap of a server holding it, minus the heap
//	    of a server holding no services (after a GC, with the zone built).
//
// Both servers print "ready" on stdout once they answer.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"syscall"

	"github.com/miekg/dns"

	dnspkg "github.com/strait-io/strait/internal/dns"
	"github.com/strait-io/strait/internal/dns/server"
	"github.com/strait-io/strait/internal/dns/zone"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: dnsbench bare|profile|memory [flags]")
		os.Exit(2)
	}
	fs := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	listen := fs.String("listen", "127.0.0.1:5353", "address to serve on (UDP)")
	file := fs.String("from-file", "", "services file (the format of strait dns serve --from-file)")
	domain := fs.String("domain", "fed.example.com", "federation domain")
	profile := fs.String("cpuprofile", "", "write a CPU profile here")
	_ = fs.Parse(os.Args[2:])
	var err error
	switch os.Args[1] {
	case "bare":
		err = bare(*listen)
	case "profile":
		err = serveProfiled(*listen, *file, *domain, *profile)
	case "memory":
		err = memory(*file, *domain)
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "dnsbench:", err)
		os.Exit(1)
	}
}

// bare is the minimal miekg/dns server: a fixed A record for every question.
func bare(addr string) error {
	a := dns.A{Hdr: dns.RR_Header{Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 180}, A: net.IPv4(10, 0, 0, 1).To4()}
	h := dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		if len(r.Question) == 1 {
			rr := a
			rr.Hdr.Name = r.Question[0].Name
			m.Answer = []dns.RR{&rr}
		}
		_ = w.WriteMsg(m)
	})
	started := make(chan struct{})
	srv := &dns.Server{Addr: addr, Net: "udp", Handler: h, NotifyStartedFunc: func() { close(started) }}
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	select {
	case <-started:
	case err := <-errc:
		return err
	}
	fmt.Println("ready")
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	select {
	case <-sig:
		return srv.Shutdown()
	case err := <-errc:
		return err
	}
}

func load(file string) ([]zone.Service, error) {
	if file == "" {
		return nil, nil
	}
	return dnspkg.FileSource{Path: file}.Services(context.Background())
}

func zoneConfig(domain string) zone.Config {
	return zone.Config{Domain: domain, Nameservers: []zone.Nameserver{{Name: "ns1." + domain, Addresses: []netip.Addr{netip.MustParseAddr("127.0.0.1")}}}}
}

func serveProfiled(addr, file, domain, profile string) error {
	services, err := load(file)
	if err != nil {
		return err
	}
	s, err := server.New(server.Config{Zone: zoneConfig(domain), Listeners: []server.Listener{{Addr: addr}}})
	if err != nil {
		return err
	}
	if err := s.Update(services); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if profile != "" {
		f, err := os.Create(profile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	if err := s.Start(ctx); err != nil {
		return err
	}
	fmt.Println("ready")
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
	return nil
}

// memory reports the live heap a server needs for the services of file.
func memory(file, domain string) error {
	services, err := load(file)
	if err != nil {
		return err
	}
	heap := func() uint64 {
		runtime.GC()
		debug.FreeOSMemory()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	empty, err := server.New(server.Config{Zone: zoneConfig(domain)})
	if err != nil {
		return err
	}
	base := heap()
	full, err := server.New(server.Config{Zone: zoneConfig(domain)})
	if err != nil {
		return err
	}
	if err := full.Update(services); err != nil {
		return err
	}
	n := len(services)
	services = nil
	loaded := heap()
	fmt.Printf("services %d names %d heap-bytes %d\n", n, len(full.Zone().Names()), int64(loaded)-int64(base))
	runtime.KeepAlive(empty)
	runtime.KeepAlive(full)
	return nil
}
