package k8s

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookbus/hookbus/pkg/events"
)

// The gateway user may create consumers of bucket hookbus_gateway_tokens
// (its token watch) and so, like escalation 3's users, aim a push consumer
// anywhere in the account: into another plugin's step queue, whose worker
// then gets every token record (name, hash, permissions) as steps the
// dispatcher never sent. docs/security.md lists neither the gateway among
// the services that can ("What is still open") nor the gateway in
// escalation 3, whose outcome is that no step reaches other's workers.
func TestReviewGatewayPushConsumerReachesOtherSubjects(t *testing.T) {
	st := startStack(t)
	ctx := attackContext(t)
	st.registerAndStart(t, ctx, events.PluginSpec{Name: otherPlugin, Event: "com.example.other.called", Priority: 10})
	// An operator's token, as hookbus gateway token create stores it.
	v := []byte(`{"name":"shop","sha256":"` + strings.Repeat("ab", 32) + `","allow":[{"action":"publish","pattern":"com.example.>"}],"rate":0,"created_at":"2026-11-28T12:00:00Z"}`)
	tokens, err := st.ajs.KeyValue(ctx, events.BucketGatewayTokens)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tokens.Put(ctx, "shop", v); err != nil {
		t.Fatal(err)
	}
	steps, err := st.admin.QueueSubscribeSync(otherSteps, otherPlugin) // other's worker
	if err != nil {
		t.Fatal(err)
	}
	if err := st.admin.Flush(); err != nil {
		t.Fatal(err)
	}

	name := "attack-" + token()
	cfg := jetstream.ConsumerConfig{Name: name, FilterSubject: "$KV.hookbus_gateway_tokens.>", DeliverSubject: otherSteps, DeliverGroup: otherPlugin,
		AckPolicy: jetstream.AckNonePolicy, DeliverPolicy: jetstream.DeliverAllPolicy}
	body, _ := json.Marshal(map[string]any{"stream_name": "KV_hookbus_gateway_tokens", "config": cfg})
	res := st.request("gateway", &nats.Msg{Subject: "$JS.API.CONSUMER.CREATE.KV_hookbus_gateway_tokens." + name + ".$KV.hookbus_gateway_tokens.>", Data: body}, 5*time.Second)
	t.Logf("gateway: push consumer on KV_hookbus_gateway_tokens delivering to %s: %s", otherSteps, res)
	st.waitPushDelivered(t, ctx, map[string]bool{otherSteps: true}, "KV_hookbus_gateway_tokens")

	if m, err := steps.NextMsg(0); err == nil {
		t.Errorf("other's worker got a step the dispatcher never sent: %s %q", m.Subject, m.Data)
	}
}
