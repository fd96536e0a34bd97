package netguard_test

import (
	"errors"
	"net/netip"
	"testing"

	"github.com/hookbus/hookbus/internal/netguard"
)

func TestCheckAddress(t *testing.T) {
	cases := []struct {
		ip      string
		allow   string
		refused bool
	}{
		{"93.184.216.34", "", false},
		{"2606:4700::6810:85e5", "", false},
		{"127.0.0.1", "", true},
		{"127.8.9.10", "", true},
		{"::1", "", true},
		{"::ffff:127.0.0.1", "", true},
		{"::ffff:10.1.2.3", "", true},
		{"169.254.169.254", "", true},
		{"fe80::1%eth0", "", true},
		{"fd00:ec2::254", "", true},
		{"100.100.100.200", "", true},
		{"10.0.0.1", "", true},
		{"172.16.5.4", "", true},
		{"192.168.1.1", "", true},
		{"0.0.0.0", "", true},
		{"::", "", true},
		{"224.0.0.1", "", true},
		{"10.0.0.1", "10.0.0.0/8", false},
		{"10.0.0.1", "10.1.0.0/16", true},
		{"::ffff:10.0.0.1", "10.0.0.0/8", false},
		// IPv4-compatible (deprecated ::a.b.c.d, tunnelled to IPv4 by a
		// host with a sit interface) and IPv4-translated (SIIT) forms.
		{"::127.0.0.1", "", true},
		{"::169.254.169.254", "", true},
		{"::ffff:0:127.0.0.1", "", true},
		{"::ffff:0:10.0.0.1", "", true},
	}
	for _, tc := range cases {
		var allow []netip.Prefix
		if tc.allow != "" {
			allow = []netip.Prefix{netip.MustParsePrefix(tc.allow)}
		}
		err := netguard.Check(netip.MustParseAddr(tc.ip), allow)
		if (err != nil) != tc.refused || (err != nil && !errors.Is(err, netguard.ErrRefused)) {
			t.Errorf("netguard.Check(%s, allow %q) = %v, want refused %v", tc.ip, tc.allow, err, tc.refused)
		}
	}
}
