package ctl

import (
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
)

// Columns of history, patronictl's.
var historyColumns = []string{"TL", "LSN", "Reason", "Timestamp", "New Leader"}

func newHistoryCommand(e *env, g *globalOptions) *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "history [CLUSTER]",
		Short: "Show the history of failovers and switchovers",
		Long: `Show the cluster's timeline history (the DCS's /history key), as patronictl
history does: one line per promotion with the timeline it ended, the LSN of
the switch, the reason, when and the new leader.`,
		Example: `  custosctl -c custos.toml history
  custosctl -c custos.toml history -f json`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkFormat(format); err != nil {
				return err
			}
			s, err := openSession(e, g)
			if err != nil {
				return err
			}
			defer s.Close()
			scope, err := s.clusterName(args)
			if err != nil {
				return err
			}
			c, err := s.read(cmd.Context(), scope)
			if err != nil {
				return err
			}
			rows := make([][]any, 0, len(c.History))
			for _, l := range c.History {
				rows = append(rows, []any{int64(l.Timeline), l.LSN, l.Reason, l.Timestamp, l.NewLeader})
			}
			return writeRows(s.e.stdout, format, historyColumns, rows, map[string]bool{"TL": true, "LSN": true}, "\t")
		},
	}
	cmd.Flags().StringVarP(&format, "format", "f", formatPretty, "output format: pretty, tsv, json or yaml")
	return cmd
}

func checkFormat(format string) error {
	switch format {
	case formatPretty, formatTSV, formatJSON, formatYAML, formatYML:
		return nil
	}
	return usageError{fmt.Errorf("unknown format %q: use pretty, tsv, json or yaml", format)}
}

// writeRows prints a plain table as patronictl's print_output does
// without a title: a bordered table, delimiter-separated lines with a
// header, a JSON list of objects (keys in column order) or a YAML list of
// mappings (keys sorted). Every cell is kept, blank ones too.
func writeRows(w io.Writer, format string, columns []string, rows [][]any, right map[string]bool, delimiter string) error {
	var b strings.Builder
	switch format {
	case formatJSON:
		b.WriteByte('[')
		for i, r := range rows {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteByte('{')
			for j, v := range r {
				if j > 0 {
					b.WriteString(", ")
				}
				b.WriteString(pyJSON(columns[j]) + ": " + pyJSON(v))
			}
			b.WriteByte('}')
		}
		b.WriteString("]\n")
	case formatYAML, formatYML:
		list := make([]any, len(rows))
		for i, r := range rows {
			m := make(map[string]any, len(r))
			for j, v := range r {
				m[columns[j]] = v
			}
			list[i] = m
		}
		// patronictl echoes the YAML with a newline of its own.
		b.WriteString(pyYAML(list) + "\n")
	case formatTSV:
		lines := make([][]any, 0, len(rows)+1)
		if columns != nil {
			header := make([]any, len(columns))
			for i, c := range columns {
				header[i] = c
			}
			lines = append(lines, header)
		}
		lines = append(lines, rows...)
		for _, r := range lines {
			cells := make([]string, len(r))
			for i, v := range r {
				cells[i] = pyStrValue(v)
			}
			b.WriteString(strings.Join(cells, delimiter) + "\n")
		}
	default:
		t := table{columns: columns, rightAligned: right}
		for _, r := range rows {
			cells := make([]string, len(r))
			for i, v := range r {
				cells[i] = pyStrValue(v)
			}
			t.rows = append(t.rows, cells)
		}
		b.WriteString(t.String())
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// pyStrValue is Python's str() of a cell.
func pyStrValue(v any) string {
	switch x := v.(type) {
	case nil:
		return "None"
	case bool:
		if x {
			return "True"
		}
		return "False"
	case string:
		return x
	}
	return fmt.Sprint(v)
}
