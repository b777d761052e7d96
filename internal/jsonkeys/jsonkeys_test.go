package jsonkeys

import (
	"slices"
	"testing"
)

func TestOf(t *testing.T) {
	for _, c := range []struct {
		in   string
		want []string
	}{
		{`{"b":1,"a":{"z":2},"c":[1,2]}`, []string{"b", "a", "c"}},
		{`{"a":1,"a":2}`, []string{"a", "a"}},
		{`{}`, nil},
		{`[1,2]`, nil},
		{`"a"`, nil},
		{``, nil},
		{`{"a":1,"b":`, []string{"a"}},
	} {
		if got := Of([]byte(c.in)); !slices.Equal(got, c.want) {
			t.Errorf("Of(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}
