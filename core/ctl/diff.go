package ctl

import (
	"strings"

	"github.com/pmezard/go-difflib/difflib"
)

// diffContext is the number of unchanged lines around each change, as in
// difflib.unified_diff (and diff -u).
const diffContext = 3

// unifiedDiff is the diff patronictl's edit-config prints on a
// non-terminal: Python's difflib.unified_diff of the two texts' lines,
// with empty file names, each line ending in a newline; "" when the texts
// are equal. go-difflib ports difflib's SequenceMatcher (autojunk
// included), so the hunks are the ones Python finds.
func unifiedDiff(before, after string) string {
	var body strings.Builder
	// Writing to a strings.Builder cannot fail.
	_ = difflib.WriteUnifiedDiff(&body, difflib.UnifiedDiff{
		A:       diffLines(before),
		B:       diffLines(after),
		Context: diffContext,
	})
	if body.Len() == 0 {
		return ""
	}
	// difflib writes "--- " and "+++ " with empty names; go-difflib
	// leaves the header out when both names are empty.
	return "--- \n+++ \n" + body.String()
}

// diffLines splits a text as patronictl does: trailing newlines dropped,
// then one entry per line, each ending in a newline.
func diffLines(s string) []string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i := range lines {
		lines[i] += "\n"
	}
	return lines
}
