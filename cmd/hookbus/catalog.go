package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/hookbus/hookbus/pkg/events"
)

func newEventsCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "events", Short: "Inspect the built-in event catalog"}
	var output string
	catalog := &cobra.Command{
		Use:   "catalog [TYPE]",
		Short: "List the built-in event types, or show one with its fields and JSON Schema",
		Long: `List the built-in event types (MishkaInstaller's reference events). An event
of one of these types is checked against its JSON Schema when it is
published; other types pass as they are.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			w := cmd.OutOrStdout()
			if len(args) == 0 {
				return printCatalog(w, output, events.Catalog())
			}
			entry, ok := events.LookupCatalog(args[0])
			if !ok {
				return usageError{fmt.Errorf("%q is not a catalog type (hookbus events catalog lists them)", args[0])}
			}
			return printEntry(w, output, entry)
		},
	}
	addOutput(catalog.Flags(), &output, "text", "json")
	cmd.AddCommand(catalog)
	return cmd
}

func printCatalog(w io.Writer, output string, entries []events.CatalogEntry) error {
	if output == "json" {
		return writeJSON(w, entries)
	}
	t := newTable(w, "TYPE", "FIELDS", "DESCRIPTION")
	for _, e := range entries {
		fields := "(any)" // a stub: any JSON object
		if !e.Stub {
			names := make([]string, len(e.Fields))
			for i, f := range e.Fields {
				names[i] = f.Name
			}
			fields = strings.Join(names, ",")
		}
		t.row(e.Type, fields, e.Description)
	}
	return t.flush()
}

func printEntry(w io.Writer, output string, e events.CatalogEntry) error {
	if output == "json" {
		return writeJSON(w, e)
	}
	fmt.Fprintf(w, "%s\n%s\n\n", e.Type, e.Description)
	if e.Stub {
		fmt.Fprintln(w, "A stub of the original catalog: any JSON object is accepted.")
	} else {
		t := newTable(w, "FIELD", "TYPE", "REQUIRED", "DESCRIPTION")
		for _, f := range e.Fields {
			t.row(f.Name, f.Type, f.Required, f.Description)
		}
		if err := t.flush(); err != nil {
			return err
		}
	}
	fmt.Fprintln(w, "\nJSON Schema:")
	_, err := fmt.Fprintln(w, string(e.Schema))
	return err
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
