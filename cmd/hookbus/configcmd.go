package main

import (
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"
)

func newConfigCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "config",
		Short: "List every HOOKBUS_* environment variable with its flag, default and meaning",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "VARIABLE\tFLAG\tDEFAULT\tMEANING")
			for _, f := range configFields() {
				flag := "--" + f.Flag
				if f.Flag == "-" {
					flag = "(none)"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", f.Env, flag, f.Default, f.Desc)
			}
			return tw.Flush()
		},
	}
}
