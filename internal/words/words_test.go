package words

import "testing"

type codec int

func (c codec) String() string { return [...]string{"none", "zlib"}[c] }

type name string

func TestOr(t *testing.T) {
	for _, tc := range []struct {
		got, want string
	}{
		{Or([]string{}), ""},
		{Or([]string{"a"}), "a"},
		{Or([]string{"a", "b"}), "a or b"},
		{Or([]name{"reboot", "poweroff", "halt"}), "reboot, poweroff or halt"},
		{Or([]codec{1, 0}), "zlib or none"},
	} {
		if tc.got != tc.want {
			t.Errorf("Or = %q, want %q", tc.got, tc.want)
		}
	}
}
