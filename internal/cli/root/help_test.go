package root

import (
	"regexp"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// walk calls f for every command of the tree, the root included.
func walk(c *cobra.Command, f func(*cobra.Command)) {
	f(c)
	for _, sub := range c.Commands() {
		walk(sub, f)
	}
}

// eachFlag calls f for every flag a command's help shows: its own and the inherited ones.
func eachFlag(c *cobra.Command, f func(*pflag.Flag)) {
	c.LocalFlags().VisitAll(f)
	c.InheritedFlags().VisitAll(f)
}

// valueName is the placeholder help prints after a flag's name, "--timeout duration": one
// word, or a pattern like HOST:PORT or pattern=N,... (klog's --vmodule), never prose.
var valueName = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_.,=:/-]*$`)

// TestFlagValueNames catches back-quoted words in flag usages: pflag prints the first one as
// the flag's value name, so "(default: what `strait join` wrote)" showed in help as
// "--cluster-id strait join".
func TestFlagValueNames(t *testing.T) {
	checked := 0
	walk(New(), func(c *cobra.Command) {
		eachFlag(c, func(fl *pflag.Flag) {
			checked++
			name, usage := pflag.UnquoteUsage(fl)
			if strings.Contains(fl.Usage, "`") {
				t.Errorf("%s --%s: usage %q has a backquote; pflag would show %q as its value name", c.CommandPath(), fl.Name, fl.Usage, name)
			}
			if name == "" {
				if fl.Value.Type() != "bool" {
					t.Errorf("%s --%s (%s): help shows no value name", c.CommandPath(), fl.Name, fl.Value.Type())
				}
				return
			}
			if !valueName.MatchString(name) {
				t.Errorf("%s --%s: help shows the value name %q, not a single token", c.CommandPath(), fl.Name, name)
			}
			if strings.TrimSpace(usage) == "" {
				t.Errorf("%s --%s: no usage text", c.CommandPath(), fl.Name)
			}
		})
	})
	if checked < 100 {
		t.Fatalf("checked only %d flags: the walk missed commands", checked)
	}
}

// designRefs are names of the project's internal design material, which means nothing to a
// user: help says what a command does in the user's terms.
var designRefs = regexp.MustCompile(`(?i)seed|design\.md|\.\./shared`)

func TestHelpNamesNoDesignDocuments(t *testing.T) {
	commands := 0
	walk(New(), func(c *cobra.Command) {
		commands++
		for field, text := range map[string]string{"Use": c.Use, "Short": c.Short, "Long": c.Long, "Example": c.Example} {
			if m := designRefs.FindString(text); m != "" {
				t.Errorf("%s: %s mentions %q:\n%s", c.CommandPath(), field, m, text)
			}
		}
		eachFlag(c, func(fl *pflag.Flag) {
			if m := designRefs.FindString(fl.Usage); m != "" {
				t.Errorf("%s --%s: usage mentions %q: %s", c.CommandPath(), fl.Name, m, fl.Usage)
			}
		})
	})
	if commands < 10 {
		t.Fatalf("walked only %d commands", commands)
	}
}
