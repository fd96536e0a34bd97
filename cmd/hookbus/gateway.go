package main

import "github.com/hookbus/hookbus/services/gateway"

// newGatewayService builds the HTTP gateway on HOOKBUS_GATEWAY_ADDR with
// the bus's event size limit, and registers its metrics.
func newGatewayService(d deps) (service, error) {
	cfg := gateway.DefaultConfig()
	cfg.Addr = d.cfg.GatewayAddr
	cfg.MaxEventSize = d.cfg.MaxEventSize
	cfg.CallTimeout = d.cfg.GatewayCallTimeout
	cfg.TLSCertFile, cfg.TLSKeyFile = d.cfg.GatewayTLSCert, d.cfg.GatewayTLSKey
	svc, err := gateway.New(cfg, d.nc, d.log)
	if err != nil {
		return nil, err
	}
	if err := d.reg.Register(svc.Collector()); err != nil {
		return nil, err
	}
	return svc, nil
}
