package dcs

import "testing"

func TestPrefix(t *testing.T) {
	for _, tc := range []struct{ ns, scope, want string }{
		{"", "demo", "/service/demo/"},
		{"/service", "demo", "/service/demo/"},
		{"/service/", "demo", "/service/demo/"},
		{"custom", "c1", "/custom/c1/"},
		{"//a//b//", "c", "/a/b/c/"},
	} {
		if got := Prefix(tc.ns, tc.scope); got != tc.want {
			t.Errorf("Prefix(%q, %q) = %q, want %q", tc.ns, tc.scope, got, tc.want)
		}
	}
}
