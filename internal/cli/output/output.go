// Package output prints command results for people (tables) or for scripts (-o json|yaml),
// the same way for every strait command.
package output

import (
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"
)

// Formats accepted by -o.
const (
	Table = ""
	Wide  = "wide"
	JSON  = "json"
	YAML  = "yaml"
)

// AddFlag registers -o/--output on a command; wide says whether it has a wide table with
// more columns. Every command accepts -o wide, as kubectl users type it by habit: one
// without a wide table prints its usual table.
func AddFlag(cmd *cobra.Command, target *string, wide bool) {
	usage := "output format: json or yaml (default: a table; wide prints the same table)"
	if wide {
		usage = "output format: json, yaml or wide (default: a table; wide adds columns)"
	}
	cmd.Flags().StringVarP(target, "output", "o", "", usage)
}

// Validate checks the value of -o: a table (none, or wide), json or yaml.
func Validate(format string) error {
	switch format {
	case Table, Wide, JSON, YAML:
		return nil
	}
	return fmt.Errorf("--output %q is not supported; use json, yaml or wide (or no -o, for a table)", format)
}

// Structured prints v as JSON or YAML and reports whether the format was one of them.
func Structured(w io.Writer, format string, v any) (bool, error) {
	switch format {
	case JSON:
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return true, enc.Encode(v)
	case YAML:
		data, err := yaml.Marshal(v)
		if err != nil {
			return true, err
		}
		_, err = w.Write(data)
		return true, err
	}
	return false, nil
}

// NewTable returns a tab writer for aligned columns; call Flush when done.
func NewTable(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
}

// ExitError ends a command with a specific exit status and no error message of its own:
// the status of a command run by `strait lab exec`, or `strait doctor`'s "problems remain".
// cmd/strait exits with Code.
type ExitError struct{ Code int }

func (e *ExitError) Error() string { return fmt.Sprintf("exit status %d", e.Code) }
