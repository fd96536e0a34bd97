package main

import "github.com/hookbus/hookbus/services/registry"

func newRegistryService(d deps) (service, error) {
	cfg := registry.DefaultConfig()
	cfg.Topology = d.cfg.topology()
	allow, err := d.cfg.webhookAllow()
	if err != nil {
		return nil, err
	}
	cfg.WebhookAllow = allow
	cfg.HookExecDir = d.cfg.HookExecDir
	return registry.New(cfg, d.nc, d.log)
}
