package main

import "github.com/hookbus/hookbus/services/dispatcher"

func newDispatcherService(d deps) (service, error) {
	cfg := dispatcher.DefaultConfig()
	cfg.Topology = d.cfg.topology()
	cfg.MaxEventSize = d.cfg.MaxEventSize
	return dispatcher.New(cfg, d.nc, d.log)
}
