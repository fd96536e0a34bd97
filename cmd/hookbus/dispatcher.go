package main

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/hookbus/hookbus/services/dispatcher"
)

func newDispatcherService(d deps) (service, error) {
	cfg := dispatcher.DefaultConfig()
	cfg.Topology = d.cfg.topology()
	cfg.MaxEventSize = d.cfg.MaxEventSize
	allow, err := d.cfg.webhookAllow()
	if err != nil {
		return nil, err
	}
	cfg.WebhookAllow = allow
	cfg.HookDisableAfter = d.cfg.HookDisableAfter
	cfg.HookExecDir, cfg.HookExecMax = d.cfg.HookExecDir, d.cfg.HookExecMax
	svc, err := dispatcher.New(cfg, d.nc, d.log)
	if err != nil {
		return nil, err
	}
	if err := d.reg.Register(svc.Collector()); err != nil {
		return nil, err
	}
	return svc, nil
}

// webhookAllow parses HOOKBUS_WEBHOOK_ALLOW: comma-separated CIDRs.
func (c Config) webhookAllow() ([]netip.Prefix, error) {
	var out []netip.Prefix
	for s := range strings.SplitSeq(c.WebhookAllow, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("HOOKBUS_WEBHOOK_ALLOW %q: want comma-separated CIDRs such as 10.20.0.0/16: %w", s, err)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}
