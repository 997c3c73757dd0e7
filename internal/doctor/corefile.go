package doctor

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/coredns/caddy/caddyfile"
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
	// Multicluster are the zones the kubernetes plugin's multicluster option serves from
	// ServiceImports (clusterset.local).
	Multicluster []string
	// Notes say what could not be read as CoreDNS reads it: imports of files outside the
	// ConfigMap, environment variables.
	Notes []string
}

// CorefileDir is where CoreDNS's Deployment mounts its ConfigMap (kubeadm, k3s, RKE2):
// absolute imports below it are the ConfigMap's other keys.
const CorefileDir = "/etc/coredns"

// ParseCorefile is ReadCorefile for callers that take what they can: a Corefile CoreDNS
// would refuse yields no hosts and no zones.
func ParseCorefile(corefile string, files map[string]string) Corefile {
	cf, _ := ReadCorefile(corefile, files)
	return cf
}

// ReadCorefile reads the hosts blocks and kubernetes zones of a Corefile with CoreDNS's own
// parser, so quoting, comments, snippets, imports and {$ENV} references mean what they mean
// to CoreDNS. files are the other keys of the coredns ConfigMap, which CoreDNS sees as files
// next to the Corefile: relative imports and imports below CorefileDir read them, and a
// hosts FILE argument finds its file by base name. The parser reads imports from disk, so
// the files are written to a private temporary directory for the parse; imports of other
// files are noted, never read from this machine. A Corefile CoreDNS would refuse is an
// error naming the file and line.
func ReadCorefile(corefile string, files map[string]string) (Corefile, error) {
	dir, err := os.MkdirTemp("", "strait-corefile-")
	if err != nil {
		return Corefile{}, err
	}
	defer os.RemoveAll(dir)
	texts := map[string]string{"Corefile": corefile}
	for name, data := range files {
		if name != "Corefile" && validFileName(name) {
			texts[name] = data
		}
	}
	im := newImporter(dir, texts)
	for name, data := range texts {
		if name == "Corefile" {
			continue
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(im.rewrite(name, data)), 0o600); err != nil {
			return Corefile{}, err
		}
	}
	text := im.rewrite("Corefile", corefile)
	if im.err != nil {
		return Corefile{}, im.err
	}
	blocks, err := caddyfile.Parse(filepath.Join(dir, "Corefile"), strings.NewReader(text), nil)
	if err != nil {
		// Name the file as it is known in the ConfigMap, not by the temporary directory.
		return Corefile{}, errors.New("the Corefile is not valid: " + strings.ReplaceAll(err.Error(), dir+string(filepath.Separator), ""))
	}
	cf := Corefile{Notes: im.notes}
	if vars := envReferences(texts); len(vars) > 0 {
		cf.Notes = append(cf.Notes, fmt.Sprintf("the Corefile refers to environment variables (%s); they were taken from the environment strait doctor runs in, not CoreDNS's", strings.Join(vars, ", ")))
	}
	cf.read(blocks, files)
	return cf, nil
}

// read collects the hosts entries and kubernetes zones of the server blocks, the way the
// hosts and kubernetes plugins read their directives.
func (cf *Corefile) read(blocks []caddyfile.ServerBlock, files map[string]string) {
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
	zones := map[string]bool{}
	addZone := func(z string) {
		z = zoneOf(z)
		if z == "" || strings.HasSuffix(z, ".arpa") || zones[z] {
			return
		}
		zones[z] = true
		cf.Zones = append(cf.Zones, z)
	}
	for _, b := range blocks {
		d := caddyfile.NewDispenserTokens("Corefile", b.Tokens["hosts"])
		for d.Next() {
			if args := d.RemainingArgs(); len(args) > 0 {
				// The first argument is the hosts file; the ConfigMap is mounted as a directory.
				if data, ok := files[path.Base(args[0])]; ok {
					for _, l := range strings.Split(data, "\n") {
						if i := strings.IndexByte(l, '#'); i >= 0 {
							l = l[:i]
						}
						entries(strings.Fields(l))
					}
				}
			}
			// Inline entries; options (fallthrough, ttl, reload, no_reverse) are not addresses.
			for d.NextBlock() {
				entries(append([]string{d.Val()}, d.RemainingArgs()...))
			}
		}
		d = caddyfile.NewDispenserTokens("Corefile", b.Tokens["kubernetes"])
		for d.Next() {
			args := d.RemainingArgs()
			if len(args) == 0 {
				// Without zones the plugin serves the server block's zones.
				args = b.Keys
			}
			for _, z := range args {
				addZone(z)
			}
			for d.NextBlock() {
				// Of the plugin's options, only multicluster names zones: those it serves
				// from ServiceImports (the Multi-Cluster Services API).
				if d.Val() == "multicluster" {
					for _, z := range d.RemainingArgs() {
						if z = zoneOf(z); z != "" {
							cf.Multicluster = append(cf.Multicluster, z)
						}
					}
				}
			}
		}
	}
}

// zoneOf is the zone of a server block key or kubernetes argument: dns://cluster.local:53
// is cluster.local. The root zone and reverse CIDR notations are not cluster zones.
func zoneOf(key string) string {
	if i := strings.Index(key, "://"); i >= 0 {
		key = key[i+3:]
	}
	if host, _, err := net.SplitHostPort(key); err == nil {
		key = host
	}
	if strings.Contains(key, "/") {
		return ""
	}
	return strings.TrimSuffix(strings.ToLower(key), ".")
}

// importer points the Corefile's file imports at the ConfigMap's files in dir before the
// parse, so that the parser never reads this machine's files.
type importer struct {
	dir      string
	unread   int
	notes    []string
	snippets map[string]bool
	err      error
}

type token struct {
	text string
	line int
}

// tokens lexes a file as the parser will.
func tokens(name, data string) []token {
	var out []token
	d := caddyfile.NewDispenser(name, strings.NewReader(data))
	for d.Next() {
		out = append(out, token{d.Val(), d.Line()})
	}
	return out
}

// newImporter learns the snippets of every file first: a file may import a snippet
// another file defines.
func newImporter(dir string, texts map[string]string) *importer {
	im := &importer{dir: dir, snippets: map[string]bool{}}
	for name, data := range texts {
		for _, t := range tokens(name, data) {
			if len(t.text) > 2 && strings.HasPrefix(t.text, "(") && strings.HasSuffix(t.text, ")") {
				im.snippets[t.text[1:len(t.text)-1]] = true
			}
		}
	}
	return im
}

// rewrite replaces the argument of every file import in data (a file named name) by a
// path in the temporary directory: the ConfigMap's file for a relative import or one below
// CorefileDir, an empty file (with a note) for any other. Snippet imports stay. An import
// line that holds more than the import is left for the parser to refuse, as CoreDNS does.
func (im *importer) rewrite(name, data string) string {
	lines := strings.Split(data, "\n")
	toks := tokens(name, data)
	// endLine is the last line a token occupies: quoted tokens may span lines.
	endLine := func(i int) int { return toks[i].line + strings.Count(toks[i].text, "\n") }
	for i, t := range toks {
		if t.text != "import" || (i > 0 && endLine(i-1) >= t.line) {
			continue
		}
		if i+1 >= len(toks) || toks[i+1].line != t.line || (i+2 < len(toks) && toks[i+2].line == t.line) {
			continue
		}
		arg := toks[i+1].text
		if strings.Contains(arg, "\n") || im.snippets[arg] || t.line > len(lines) {
			continue
		}
		target := im.target(name, t.line, arg)
		if target == "" {
			continue
		}
		lines[t.line-1] = `import "` + target + `"`
	}
	return strings.Join(lines, "\n")
}

// target is where an import pattern is read from in the temporary directory, or "" to
// leave the import as it is.
func (im *importer) target(file string, line int, pattern string) string {
	if strings.Contains(pattern, "{$") || strings.Contains(pattern, "{%") {
		return "" // the parser substitutes the variable; the note on variables covers it
	}
	rel := pattern
	if filepath.IsAbs(pattern) {
		r, err := filepath.Rel(CorefileDir, filepath.Clean(pattern))
		if err != nil {
			return im.placeholder(file, line, pattern, "it is not in the coredns ConfigMap")
		}
		rel = r
	}
	rel = filepath.Clean(rel)
	if rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) || filepath.IsAbs(rel) {
		return im.placeholder(file, line, pattern, "it is not in the coredns ConfigMap")
	}
	full := filepath.Join(im.dir, rel)
	if strings.ContainsAny(rel, "*?[") {
		if m, _ := filepath.Glob(full); len(m) == 0 {
			return im.placeholder(file, line, pattern, "no key of the coredns ConfigMap matches it")
		}
	}
	if !filepath.IsAbs(pattern) {
		return "" // the parser finds it next to the Corefile, or reports it missing
	}
	return full
}

// placeholder notes an import that is not read and returns an empty file to import instead.
func (im *importer) placeholder(file string, line int, pattern, why string) string {
	im.unread++
	p := filepath.Join(im.dir, ".unread", strconv.Itoa(im.unread))
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil && im.err == nil {
		im.err = err
	}
	if err := os.WriteFile(p, nil, 0o600); err != nil && im.err == nil {
		im.err = err
	}
	im.notes = append(im.notes, fmt.Sprintf("%s:%d: import %s was not read: %s", file, line, pattern, why))
	return p
}

// validFileName reports whether a ConfigMap key can be written as a file of its own.
func validFileName(name string) bool {
	return name != "" && name != "." && name != ".." && !strings.ContainsAny(name, `/\`)
}

// envReferences lists the {$VAR} and {%VAR%} references of the Corefile and its files.
func envReferences(texts map[string]string) []string {
	seen := map[string]bool{}
	scan := func(s, start, end string) {
		for {
			i := strings.Index(s, start)
			if i < 0 {
				return
			}
			s = s[i+len(start):]
			j := strings.Index(s, end)
			if j < 0 {
				return
			}
			if j > 0 {
				seen[s[:j]] = true
			}
			s = s[j+len(end):]
		}
	}
	for _, s := range texts {
		scan(s, "{$", "}")
		scan(s, "{%", "%}")
	}
	out := make([]string, 0, len(seen))
	for v := range seen {
		out = append(out, v)
	}
	sort.Strings(out)
	return out
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
