package doctor

import (
	"net/netip"
	"path"
	"strings"
)

// HostsEntry is one name of a CoreDNS hosts block and the addresses it answers with.
type HostsEntry struct {
	Name      string   `json:"name"`
	Addresses []string `json:"addresses"`
}

// Corefile is what the doctor reads from CoreDNS's configuration.
type Corefile struct {
	// Hosts are the names of every hosts block, inline or from a file kept in the same
	// ConfigMap, lowercased without the trailing dot, in file order.
	Hosts []HostsEntry
	// Zones are the zones of the kubernetes plugin (cluster.local, ...).
	Zones []string
}

// ParseCorefile reads the hosts blocks and kubernetes zones of a Corefile. files are the
// other keys of the coredns ConfigMap, where a hosts FILE argument may point (by base name,
// as the ConfigMap is mounted as a directory).
func ParseCorefile(corefile string, files map[string]string) Corefile {
	var cf Corefile
	byName := map[string]int{}
	add := func(ip, name string) {
		name = strings.TrimSuffix(strings.ToLower(name), ".")
		if name == "" {
			return
		}
		i, ok := byName[name]
		if !ok {
			i = len(cf.Hosts)
			byName[name] = i
			cf.Hosts = append(cf.Hosts, HostsEntry{Name: name})
		}
		cf.Hosts[i].Addresses = append(cf.Hosts[i].Addresses, ip)
	}
	entries := func(fields []string) {
		if len(fields) < 2 {
			return
		}
		a, err := netip.ParseAddr(fields[0])
		if err != nil {
			return
		}
		for _, n := range fields[1:] {
			add(a.String(), n)
		}
	}
	depth, hostsDepth := 0, -1
	for _, line := range strings.Split(corefile, "\n") {
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		opens := strings.HasSuffix(fields[len(fields)-1], "{")
		if opens {
			fields[len(fields)-1] = strings.TrimSuffix(fields[len(fields)-1], "{")
			if fields[len(fields)-1] == "" {
				fields = fields[:len(fields)-1]
			}
		}
		switch {
		case hostsDepth >= 0 && len(fields) > 0 && fields[0] != "}":
			entries(fields)
		case len(fields) > 0 && fields[0] == "hosts":
			if len(fields) > 1 {
				if data, ok := files[path.Base(fields[1])]; ok {
					for _, l := range strings.Split(data, "\n") {
						if i := strings.IndexByte(l, '#'); i >= 0 {
							l = l[:i]
						}
						entries(strings.Fields(l))
					}
				}
			}
			if opens {
				hostsDepth = depth + 1
			}
		case len(fields) > 0 && fields[0] == "kubernetes":
			for _, z := range fields[1:] {
				z = strings.TrimSuffix(strings.ToLower(z), ".")
				if !strings.HasSuffix(z, ".arpa") {
					cf.Zones = append(cf.Zones, z)
				}
			}
		}
		if opens {
			depth++
		}
		for _, f := range fields {
			if strings.HasPrefix(f, "}") {
				depth--
				if depth < hostsDepth {
					hostsDepth = -1
				}
			}
		}
	}
	return cf
}

// Lookup returns the hosts entry of a name, if any.
func (c Corefile) Lookup(name string) (HostsEntry, bool) {
	name = strings.TrimSuffix(strings.ToLower(name), ".")
	for _, h := range c.Hosts {
		if h.Name == name {
			return h, true
		}
	}
	return HostsEntry{}, false
}

// ServiceName reports which Service a name in a cluster zone stands for:
// <service>.<namespace>.svc.<zone>.
func (c Corefile) ServiceName(name string) (namespace, service string, ok bool) {
	for _, z := range c.Zones {
		rest, found := strings.CutSuffix(name, ".svc."+z)
		if !found {
			continue
		}
		parts := strings.Split(rest, ".")
		if len(parts) != 2 {
			return "", "", false
		}
		return parts[1], parts[0], true
	}
	return "", "", false
}
