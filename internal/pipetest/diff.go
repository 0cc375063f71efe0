package pipetest

import (
	"fmt"
	"strings"
)

// Diff shows how got differs from want, line by line: common lines with
// two spaces, want's with "- ", got's with "+ ". A pair of single lines
// that differ also gets a caret under the first differing character, as
// a long JSON record differs in one value.
func Diff(want, got string) string {
	a, b := strings.Split(want, "\n"), strings.Split(got, "\n")
	var out []string
	if len(a) == 1 && len(b) == 1 {
		col := firstDiff(a[0], b[0])
		out = append(out, "- "+a[0], "+ "+b[0], fmt.Sprintf("  %s^ column %d", strings.Repeat(" ", col), col+1))
		return strings.Join(out, "\n")
	}
	// Longest common subsequence of lines: records are short lists, so
	// the quadratic table is fine.
	lcs := make([][]int, len(a)+1)
	for i := range lcs {
		lcs[i] = make([]int, len(b)+1)
	}
	for i := len(a) - 1; i >= 0; i-- {
		for j := len(b) - 1; j >= 0; j-- {
			if a[i] == b[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		switch {
		case i < len(a) && j < len(b) && a[i] == b[j]:
			out = append(out, "  "+a[i])
			i, j = i+1, j+1
		case i < len(a) && (j == len(b) || lcs[i+1][j] >= lcs[i][j+1]):
			out = append(out, "- "+a[i])
			i++
		default:
			out = append(out, "+ "+b[j])
			j++
		}
	}
	return strings.Join(out, "\n")
}

// firstDiff is the index, in runes, of the first rune where a and b
// differ.
func firstDiff(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	i := 0
	for i < len(ra) && i < len(rb) && ra[i] == rb[i] {
		i++
	}
	return i
}
