package ctl

import (
	"strings"
	"unicode/utf8"
)

// table renders patronictl's tables (Python's prettytable as patronictl
// configures it): a frame of '+', '-' and '|', one space of padding, cells
// aligned left unless right-aligned, the title written over the start of
// the top border. A cell with several lines makes every row as high as it
// needs and puts a rule between all rows.
type table struct {
	title        string
	columns      []string
	rightAligned map[string]bool
	rows         [][]string
}

// String renders the table, each line ending in a newline.
func (t table) String() string {
	widths := make([]int, len(t.columns))
	multiline := false
	for i, c := range t.columns {
		widths[i] = textWidth(c)
	}
	for _, r := range t.rows {
		for i, cell := range r {
			for _, line := range strings.Split(cell, "\n") {
				widths[i] = max(widths[i], textWidth(line))
			}
			multiline = multiline || strings.Contains(cell, "\n")
		}
	}

	var rule strings.Builder
	rule.WriteByte('+')
	for _, w := range widths {
		rule.WriteString(strings.Repeat("-", w+2) + "+")
	}
	hrule := rule.String()

	var b strings.Builder
	b.WriteString(withTitle(hrule, t.title) + "\n")
	b.WriteString(t.line(t.columns, widths) + "\n")
	b.WriteString(hrule + "\n")
	if len(t.rows) == 0 {
		// prettytable closes an empty table with a second rule.
		b.WriteString(hrule + "\n")
	}
	for i, r := range t.rows {
		height := 1
		split := make([][]string, len(r))
		for j, cell := range r {
			split[j] = strings.Split(cell, "\n")
			height = max(height, len(split[j]))
		}
		for k := range height {
			cells := make([]string, len(r))
			for j := range r {
				if k < len(split[j]) {
					cells[j] = split[j][k]
				}
			}
			b.WriteString(t.line(cells, widths) + "\n")
		}
		if multiline || i == len(t.rows)-1 {
			b.WriteString(hrule + "\n")
		}
	}
	return b.String()
}

// line is one text line of a row: "| a | b |".
func (t table) line(cells []string, widths []int) string {
	var b strings.Builder
	b.WriteByte('|')
	for i, c := range cells {
		pad := strings.Repeat(" ", widths[i]-textWidth(c))
		if t.rightAligned[t.columns[i]] {
			b.WriteString(" " + pad + c + " |")
		} else {
			b.WriteString(" " + c + pad + " |")
		}
	}
	return b.String()
}

// withTitle writes the title over the top border after its first '+',
// cut to leave the border's last character, as patronictl does.
func withTitle(hrule, title string) string {
	if title == "" {
		return hrule
	}
	border := []rune(hrule)
	head := []rune(title)
	if room := len(border) - 2; len(head) > room {
		head = head[:max(room, 0)]
	}
	return string(border[:1]) + string(head) + string(border[1+len(head):])
}

// textWidth is the width of a text in columns, one per character.
func textWidth(s string) int { return utf8.RuneCountInString(s) }
