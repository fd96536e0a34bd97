package main

import "github.com/hookbus/hookbus/services/gateway"

// newGatewayService builds the HTTP gateway on HOOKBUS_GATEWAY_ADDR with
// the bus's event size limit.
func newGatewayService(d deps) (service, error) {
	cfg := gateway.DefaultConfig()
	cfg.Addr = d.cfg.GatewayAddr
	cfg.MaxEventSize = d.cfg.MaxEventSize
	return gateway.New(cfg, d.nc, d.log)
}
