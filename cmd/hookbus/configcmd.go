package main

import (
	"encoding/json"
	"maps"
	"slices"

	"github.com/spf13/cobra"
)

func newConfigCmd() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "config",
		Short: "List every HOOKBUS_* environment variable with its flag, default and meaning",
		Long: `List every HOOKBUS_* environment variable with its flag, default and meaning.

With -o json the list is a JSON object for tools (the Kubernetes manifests'
checks read it): {"variables": [{"name", "flag", "default", "description"}],
"services": [the names "hookbus serve" accepts]}; "flag" is empty for a
variable that has none.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			switch output {
			case "text":
				t := newTable(cmd.OutOrStdout(), "VARIABLE", "FLAG", "DEFAULT", "MEANING")
				for _, f := range configFields() {
					t.row(f.Env, configFlag(f, "(none)"), f.Default, f.Desc)
				}
				return t.flush()
			case "json":
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(configListing())
			}
			return nil
		},
	}
	addOutput(cmd.Flags(), &output, "text", "json")
	return cmd
}

// configJSON is what `hookbus config -o json` prints.
type configJSON struct {
	Variables []configVariableJSON `json:"variables"`
	Services  []string             `json:"services"`
}

type configVariableJSON struct {
	Name        string `json:"name"`
	Flag        string `json:"flag"` // "--nats-url", or "" when there is none
	Default     string `json:"default"`
	Description string `json:"description"`
}

func configListing() configJSON {
	out := configJSON{Services: slices.Sorted(maps.Keys(serviceFactories))}
	for _, f := range configFields() {
		out.Variables = append(out.Variables, configVariableJSON{Name: f.Env, Flag: configFlag(f, ""), Default: f.Default, Description: f.Desc})
	}
	return out
}

// configFlag is f's flag as typed ("--nats-url"), or none when f has no flag.
func configFlag(f configField, none string) string {
	if f.Flag == "-" {
		return none
	}
	return "--" + f.Flag
}
