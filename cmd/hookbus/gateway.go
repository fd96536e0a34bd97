package main

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/hookbus/hookbus/services/gateway"
)

// newGatewayService builds the HTTP gateway on HOOKBUS_GATEWAY_ADDR with
// the bus's event size limit, and registers its metrics.
func newGatewayService(d deps) (service, error) {
	cfg, err := d.cfg.gateway()
	if err != nil {
		return nil, err
	}
	svc, err := gateway.New(cfg, d.nc, d.log)
	if err != nil {
		return nil, err
	}
	if err := d.reg.Register(svc.Collector()); err != nil {
		return nil, err
	}
	return svc, nil
}

// gateway is the gateway's configuration from HOOKBUS_GATEWAY_* and
// HOOKBUS_MAX_EVENT_SIZE, with device sessions when a device token secret
// is set (HOOKBUS_DEVICE_TOKEN_*).
func (c Config) gateway() (gateway.Config, error) {
	g := gateway.DefaultConfig()
	g.Addr, g.MaxEventSize, g.Rate, g.MaxHeaders = c.GatewayAddr, c.MaxEventSize, c.GatewayRate, c.GatewayMaxHeaders
	g.MaxInflightBytes = c.GatewayMaxInflight
	g.CallTimeout, g.TLSCertFile, g.TLSKeyFile = c.GatewayCallTimeout, c.GatewayTLSCert, c.GatewayTLSKey
	if c.GatewayAnonymous != "" {
		on, err := strconv.ParseBool(c.GatewayAnonymous)
		if err != nil {
			return g, fmt.Errorf("HOOKBUS_GATEWAY_ANONYMOUS %q: want true, false or empty", c.GatewayAnonymous)
		}
		g.Anonymous = &on
	}
	g.TokenRefresh, g.TokenExpiry, g.DeviceCallTimeout = c.DeviceTokenRefresh, c.DeviceTokenExpiry, c.DeviceCallTimeout
	if c.Replica != "" {
		g.Replica = c.Replica
	}
	if c.DeviceTokenSecret != "" || c.DeviceTokenSecretFile != "" {
		env := map[string]string{
			"HOOKBUS_DEVICE_TOKEN_SECRET": string(c.DeviceTokenSecret), "HOOKBUS_DEVICE_TOKEN_SECRET_FILE": c.DeviceTokenSecretFile,
			"HOOKBUS_DEVICE_TOKEN_SALT": string(c.DeviceTokenSalt), "HOOKBUS_DEVICE_TOKEN_SALT_FILE": c.DeviceTokenSaltFile,
		}
		sealer, err := gateway.DeviceSealerFromEnv(func(k string) string { return env[k] })
		if err != nil {
			return g, err
		}
		g.DeviceTokens = sealer
	}
	for o := range strings.SplitSeq(c.GatewayCORSOrigins, ",") {
		if o = strings.TrimSpace(o); o != "" {
			g.CORSOrigins = append(g.CORSOrigins, o)
		}
	}
	return g, nil
}
