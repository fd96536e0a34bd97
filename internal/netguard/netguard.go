// Package netguard decides which network addresses Hookbus may connect to
// on a user's behalf (webhook targets): not what the host, its cluster or
// its cloud serve, unless the operator allows it.
package netguard

import (
	"errors"
	"fmt"
	"net/netip"
)

// ErrRefused is matched by the error of a refused address.
var ErrRefused = errors.New("address refused")

// refusedPrefixes are the networks a webhook may not reach unless the
// operator allows them: what the host itself, its cluster and its cloud
// serve (loopback, private and link-local ranges, where cloud metadata
// services answer), and addresses that are no single host.
var refusedPrefixes = func() []netip.Prefix {
	var out []netip.Prefix
	for _, s := range []string{
		"0.0.0.0/8",       // "this network", unspecified
		"10.0.0.0/8",      // private
		"100.64.0.0/10",   // shared address space (carrier NAT; Alibaba's metadata 100.100.100.200)
		"127.0.0.0/8",     // loopback
		"169.254.0.0/16",  // link-local, cloud metadata 169.254.169.254
		"172.16.0.0/12",   // private
		"192.0.0.0/24",    // IETF protocol assignments
		"192.168.0.0/16",  // private
		"198.18.0.0/15",   // benchmarking
		"224.0.0.0/4",     // multicast
		"240.0.0.0/4",     // reserved, broadcast
		"::/96",           // unspecified, and IPv4-compatible ::a.b.c.d (deprecated; a sit tunnel sends it to IPv4)
		"::ffff:0:0:0/96", // IPv4-translated (SIIT): embeds an IPv4 address
		"::1/128",         // loopback
		"64:ff9b::/96",    // NAT64: embeds an IPv4 address
		"64:ff9b:1::/48",  // local NAT64
		"2002::/16",       // 6to4: embeds an IPv4 address
		"fc00::/7",        // unique local (private; AWS metadata fd00:ec2::254)
		"fe80::/10",       // link-local
		"ff00::/8",        // multicast
		"2001::/32",       // Teredo: embeds an IPv4 address
		"100::/64",        // discard-only
	} {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}()

// Check refuses ip (an error matching ErrRefused) when it is in a refused
// network (loopback, private, link-local and metadata, shared, multicast,
// reserved, and IPv6 forms embedding IPv4) and in no prefix of allow.
func Check(ip netip.Addr, allow []netip.Prefix) error {
	ip = ip.WithZone("")
	for _, a := range []netip.Addr{ip, ip.Unmap()} {
		for _, p := range allow {
			if p.Contains(a) {
				return nil
			}
		}
	}
	for _, a := range []netip.Addr{ip, ip.Unmap()} {
		for _, p := range refusedPrefixes {
			if p.Contains(a) {
				return fmt.Errorf("%w: %s is in %s (loopback, private, link-local, metadata or not a single host); an operator may allow it with the dispatcher's webhook allow-list", ErrRefused, ip, p)
			}
		}
	}
	return nil
}
