package main

import "github.com/hookbus/hookbus/services/dispatcher"

func newDispatcherService(d deps) (service, error) {
	cfg := dispatcher.DefaultConfig()
	cfg.Topology = d.cfg.topology()
	cfg.MaxEventSize = d.cfg.MaxEventSize
	svc, err := dispatcher.New(cfg, d.nc, d.log)
	if err != nil {
		return nil, err
	}
	if err := d.reg.Register(svc.Collector()); err != nil {
		return nil, err
	}
	return svc, nil
}
