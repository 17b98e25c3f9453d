package ctl

import (
	"fmt"
	"strings"
)

// diffContext is the number of unchanged lines around each change, as in
// difflib.unified_diff (and diff -u).
const diffContext = 3

// maxDiffCells bounds the LCS table; a larger pair of texts is shown as one
// replacement.
const maxDiffCells = 16 << 20

// opcode is one block of an alignment: a[i1:i2] becomes b[j1:j2].
type opcode struct {
	tag            byte // 'e'qual, 'r'eplace, 'd'elete, 'i'nsert
	i1, i2, j1, j2 int
}

// unifiedDiff is the diff patronictl's edit-config prints on a
// non-terminal (Python's difflib.unified_diff without file names): each
// line ends in a newline, "" when the texts are equal.
func unifiedDiff(before, after string) string {
	a, b := diffLines(before), diffLines(after)
	var out strings.Builder
	for gi, group := range groupOpcodes(opcodes(a, b), diffContext) {
		if gi == 0 {
			out.WriteString("--- \n+++ \n")
		}
		first, last := group[0], group[len(group)-1]
		fmt.Fprintf(&out, "@@ -%s +%s @@\n", unifiedRange(first.i1, last.i2), unifiedRange(first.j1, last.j2))
		for _, op := range group {
			if op.tag == 'e' {
				for _, l := range a[op.i1:op.i2] {
					out.WriteString(" " + l + "\n")
				}
				continue
			}
			if op.tag == 'r' || op.tag == 'd' {
				for _, l := range a[op.i1:op.i2] {
					out.WriteString("-" + l + "\n")
				}
			}
			if op.tag == 'r' || op.tag == 'i' {
				for _, l := range b[op.j1:op.j2] {
					out.WriteString("+" + l + "\n")
				}
			}
		}
	}
	return out.String()
}

// diffLines splits a text as patronictl does: trailing newlines dropped,
// then one entry per line.
func diffLines(s string) []string {
	return strings.Split(strings.TrimRight(s, "\n"), "\n")
}

func unifiedRange(start, stop int) string {
	begin, length := start+1, stop-start
	if length == 1 {
		return fmt.Sprint(begin)
	}
	if length == 0 {
		begin--
	}
	return fmt.Sprintf("%d,%d", begin, length)
}

// opcodes aligns a and b on a longest common subsequence of lines.
func opcodes(a, b []string) []opcode {
	n, m := len(a), len(b)
	var ops []opcode
	add := func(tag byte, i1, i2, j1, j2 int) {
		if i1 == i2 && j1 == j2 {
			return
		}
		if k := len(ops) - 1; k >= 0 && ops[k].tag == tag {
			ops[k].i2, ops[k].j2 = i2, j2
			return
		}
		ops = append(ops, opcode{tag, i1, i2, j1, j2})
	}
	if (n+1)*(m+1) > maxDiffCells {
		add('r', 0, n, 0, m)
		return ops
	}
	// lcs[i][j] is the LCS length of a[i:] and b[j:].
	lcs := make([][]int32, n+1)
	for i := range lcs {
		lcs[i] = make([]int32, m+1)
	}
	for i := n - 1; i >= 0; i-- {
		for j := m - 1; j >= 0; j-- {
			if a[i] == b[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	i, j := 0, 0
	di, dj := 0, 0 // start of the pending change
	flush := func() {
		switch {
		case di < i && dj < j:
			add('r', di, i, dj, j)
		case di < i:
			add('d', di, i, dj, j)
		case dj < j:
			add('i', di, i, dj, j)
		}
	}
	for i < n || j < m {
		switch {
		case i < n && j < m && a[i] == b[j]:
			flush()
			add('e', i, i+1, j, j+1)
			i, j = i+1, j+1
			di, dj = i, j
		case j < m && (i == n || lcs[i][j+1] >= lcs[i+1][j]):
			j++
		default:
			i++
		}
	}
	flush()
	return ops
}

// groupOpcodes cuts the alignment into hunks with n lines of context, as
// difflib's get_grouped_opcodes.
func groupOpcodes(ops []opcode, n int) [][]opcode {
	if len(ops) == 0 {
		ops = []opcode{{'e', 0, 1, 0, 1}}
	}
	if ops[0].tag == 'e' {
		o := &ops[0]
		o.i1, o.j1 = max(o.i1, o.i2-n), max(o.j1, o.j2-n)
	}
	if last := &ops[len(ops)-1]; last.tag == 'e' {
		last.i2, last.j2 = min(last.i2, last.i1+n), min(last.j2, last.j1+n)
	}
	var groups [][]opcode
	var group []opcode
	for _, o := range ops {
		if o.tag == 'e' && o.i2-o.i1 > 2*n {
			group = append(group, opcode{'e', o.i1, min(o.i2, o.i1+n), o.j1, min(o.j2, o.j1+n)})
			groups = append(groups, group)
			group = nil
			o.i1, o.j1 = max(o.i1, o.i2-n), max(o.j1, o.j2-n)
		}
		group = append(group, o)
	}
	if len(group) > 0 && !(len(group) == 1 && group[0].tag == 'e') {
		groups = append(groups, group)
	}
	return groups
}
