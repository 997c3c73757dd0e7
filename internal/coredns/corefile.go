// Package coredns edits a cluster's CoreDNS configuration for the Multi-Cluster Services
// API: the kubernetes plugin serves clusterset.local from ServiceImports when its zones
// include clusterset.local and its block has `multicluster clusterset.local`. The edit
// touches only the kubernetes directive's line and adds one line; everything else of the
// Corefile (comments, other plugins, other server blocks) stays as it was, and the edit
// can be taken back. It is pure; the installer reads and writes the ConfigMap.
package coredns

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/coredns/caddy/caddyfile"
)

// Zone is the zone of multi-cluster Services.
const Zone = "clusterset.local"

// multiclusterLine is the line added to the kubernetes block.
const multiclusterLine = "multicluster " + Zone

// directive is the kubernetes directive of a Corefile: its line (0-based), its
// arguments (zones) on that line, whether it opens a block, and the multicluster line in
// its block (-1: none).
type directive struct {
	line         int
	args         []string
	block        bool
	multicluster int
	multiZones   []string
}

// find locates the first kubernetes directive of the Corefile itself (not of an imported
// file), with CoreDNS's own parser.
func find(corefile string) (directive, error) {
	blocks, err := caddyfile.Parse("Corefile", strings.NewReader(corefile), nil)
	if err != nil {
		return directive{}, fmt.Errorf("the Corefile is not valid: %w", err)
	}
	for _, b := range blocks {
		toks := b.Tokens["kubernetes"]
		if len(toks) == 0 || (toks[0].File != "" && toks[0].File != "Corefile") {
			continue
		}
		d := directive{line: toks[0].Line - 1, multicluster: -1}
		for _, t := range toks[1:] {
			if t.Line != toks[0].Line {
				break
			}
			if t.Text == "{" {
				d.block = true
				continue
			}
			d.args = append(d.args, t.Text)
		}
		for i := 1; i < len(toks); i++ {
			if toks[i].Text == "multicluster" && toks[i].Line != toks[0].Line {
				d.multicluster = toks[i].Line - 1
				for j := i + 1; j < len(toks) && toks[j].Line == toks[i].Line; j++ {
					d.multiZones = append(d.multiZones, strings.TrimSuffix(toks[j].Text, "."))
				}
			}
		}
		return d, nil
	}
	return directive{}, errors.New("the Corefile has no kubernetes plugin, so its CoreDNS does not serve cluster names; add the multicluster option by hand where this cluster's CoreDNS serves them")
}

// servesZone reports whether the kubernetes directive's arguments include the zone (no
// arguments: the server block's zones, which the directive serves all of).
func (d directive) servesZone() bool {
	if len(d.args) == 0 {
		return true
	}
	return slices.ContainsFunc(d.args, func(a string) bool { return strings.TrimSuffix(a, ".") == Zone })
}

// Configured reports whether the Corefile already serves clusterset.local from
// ServiceImports.
func Configured(corefile string) (bool, error) {
	d, err := find(corefile)
	if err != nil {
		return false, err
	}
	return d.servesZone() && slices.Contains(d.multiZones, Zone), nil
}

// AddMulticluster returns the Corefile with clusterset.local among the kubernetes plugin's
// zones and `multicluster clusterset.local` in its block; changed is false when it was
// there already.
func AddMulticluster(corefile string) (out string, changed bool, err error) {
	d, err := find(corefile)
	if err != nil {
		return "", false, err
	}
	lines := strings.Split(corefile, "\n")
	indent := leadingSpace(lines[d.line])
	args := d.args
	if !d.servesZone() {
		// After the first zone: cluster.local clusterset.local in-addr.arpa ip6.arpa.
		args = slices.Insert(slices.Clone(d.args), 1, Zone)
		lines[d.line] = rewrite(lines[d.line], indent, args, d.block)
		changed = true
	}
	if !slices.Contains(d.multiZones, Zone) {
		changed = true
		switch {
		case d.multicluster >= 0:
			// A multicluster line for other zones: add ours to it.
			lines[d.multicluster] = strings.TrimRight(code(lines[d.multicluster]), " \t") + " " + Zone + comment(lines[d.multicluster])
		case d.block:
			inner := indent + "    "
			if d.line+1 < len(lines) && strings.TrimSpace(lines[d.line+1]) != "}" {
				inner = leadingSpace(lines[d.line+1])
			}
			lines = slices.Insert(lines, d.line+1, inner+multiclusterLine)
		default:
			lines[d.line] = rewrite(lines[d.line], indent, args, true)
			lines = slices.Insert(lines, d.line+1, indent+"    "+multiclusterLine, indent+"}")
		}
	}
	return strings.Join(lines, "\n"), changed, nil
}

// RemoveMulticluster takes back what AddMulticluster added: clusterset.local from the
// kubernetes plugin's zones and from its multicluster option (the whole line when it
// named no other zone). Other edits made since stay.
func RemoveMulticluster(corefile string) (string, error) {
	d, err := find(corefile)
	if err != nil {
		return "", err
	}
	lines := strings.Split(corefile, "\n")
	indent := leadingSpace(lines[d.line])
	if len(d.args) > 0 && slices.ContainsFunc(d.args, isZone) {
		lines[d.line] = rewrite(lines[d.line], indent, slices.DeleteFunc(slices.Clone(d.args), isZone), d.block)
	}
	if d.multicluster >= 0 && slices.Contains(d.multiZones, Zone) {
		rest := slices.DeleteFunc(slices.Clone(d.multiZones), func(z string) bool { return z == Zone })
		if len(rest) == 0 {
			lines = slices.Delete(lines, d.multicluster, d.multicluster+1)
		} else {
			lines[d.multicluster] = leadingSpace(lines[d.multicluster]) + "multicluster " + strings.Join(rest, " ") + comment(lines[d.multicluster])
		}
	}
	return strings.Join(lines, "\n"), nil
}

func isZone(a string) bool { return strings.TrimSuffix(a, ".") == Zone }

// rewrite writes the kubernetes directive's line with args, keeping its indentation and
// its comment.
func rewrite(line, indent string, args []string, block bool) string {
	s := indent + "kubernetes"
	if len(args) > 0 {
		s += " " + strings.Join(args, " ")
	}
	if block {
		s += " {"
	}
	return s + comment(line)
}

func leadingSpace(line string) string {
	return line[:len(line)-len(strings.TrimLeft(line, " \t"))]
}

// code is the line without its comment; comment is the comment with the space before it.
func code(line string) string {
	if i := commentStart(line); i >= 0 {
		return line[:i]
	}
	return line
}

func comment(line string) string {
	if i := commentStart(line); i >= 0 {
		j := i
		for j > 0 && (line[j-1] == ' ' || line[j-1] == '\t') {
			j--
		}
		return line[j:]
	}
	return ""
}

// commentStart is where a # outside quotes begins, or -1.
func commentStart(line string) int {
	quoted := false
	for i := 0; i < len(line); i++ {
		switch line[i] {
		case '"':
			quoted = !quoted
		case '#':
			if !quoted {
				return i
			}
		}
	}
	return -1
}
