// Interop check with Eclipse Paho Go (paho.mqtt.golang), a real, independent MQTT client.
//
// Usage: interop -url tcp://127.0.0.1:1883 | ws://127.0.0.1:8080/mqtt -prefix NAME
//
// One scenario against the gateway: QoS 0/1/2 (and the QoS downgrade on a QoS 1 wildcard
// subscription, issue #12), a retained message, a Will published when the server closes
// the connection (a takeover by the same client id), a persistent session (a QoS 1 message
// queued while offline, Session Present on resume), and unsubscribe. Prints one JSON line;
// exit code 0 only when every check passed.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"sync"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

type received struct {
	Topic   string `json:"topic"`
	Payload string `json:"payload"`
	QoS     byte   `json:"qos"`
	Retain  bool   `json:"retain"`
}

// inbox collects the messages a client receives, in order.
type inbox struct {
	mu   sync.Mutex
	msgs []received
}

func (b *inbox) handler(_ mqtt.Client, m mqtt.Message) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.msgs = append(b.msgs, received{m.Topic(), string(m.Payload()), m.Qos(), m.Retained()})
}

// wait returns the first message with this payload, or false after the timeout.
func (b *inbox) wait(payload string, timeout time.Duration) (received, bool) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		b.mu.Lock()
		for _, m := range b.msgs {
			if m.Payload == payload {
				b.mu.Unlock()
				return m, true
			}
		}
		b.mu.Unlock()
		time.Sleep(10 * time.Millisecond)
	}
	return received{}, false
}

func (b *inbox) count(payload string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for _, m := range b.msgs {
		if m.Payload == payload {
			n++
		}
	}
	return n
}

var failures = []string{}

func check(ok bool, format string, args ...any) {
	if !ok {
		failures = append(failures, fmt.Sprintf(format, args...))
	}
}

const timeout = 5 * time.Second

func done(t mqtt.Token, what string) bool {
	if !t.WaitTimeout(timeout) {
		check(false, "%s: timed out", what)
		return false
	}
	if err := t.Error(); err != nil {
		check(false, "%s: %v", what, err)
		return false
	}
	return true
}

func options(url, id string, clean bool, box *inbox) *mqtt.ClientOptions {
	o := mqtt.NewClientOptions().AddBroker(url).SetClientID(id).SetCleanSession(clean).
		SetProtocolVersion(4).SetAutoReconnect(false).SetConnectRetry(false).
		SetKeepAlive(30 * time.Second).SetConnectTimeout(timeout)
	if box != nil {
		// Messages of a resumed session arrive before any Subscribe call on this connection.
		o.SetDefaultPublishHandler(box.handler)
	}
	return o
}

func connect(o *mqtt.ClientOptions, what string) (mqtt.Client, bool) {
	c := mqtt.NewClient(o)
	t := c.Connect()
	if !done(t, what+" connect") {
		return c, false
	}
	return c, t.(*mqtt.ConnectToken).SessionPresent()
}

func main() {
	url := flag.String("url", "", "broker URL (tcp://host:port or ws://host:port/path)")
	prefix := flag.String("prefix", "go", "topic and client id prefix (one per run)")
	flag.Parse()
	p := *prefix
	box := &inbox{}

	// Subscriber with a persistent session: QoS 2 on p/q/#, QoS 1 on p/+/x.
	sub, present := connect(options(*url, p+"-sub", false, box), "subscriber")
	check(!present, "first connect of a new persistent session: Session Present 0")
	done(sub.SubscribeMultiple(map[string]byte{p + "/q/#": 2, p + "/+/x": 1}, box.handler), "subscribe")

	pub, _ := connect(options(*url, p+"-pub", true, nil), "publisher")

	// QoS 0/1/2 on a QoS 2 subscription arrive at their own QoS.
	for qos := byte(0); qos <= 2; qos++ {
		payload := fmt.Sprintf("%s-q%d", p, qos)
		done(pub.Publish(fmt.Sprintf("%s/q/%d", p, qos), qos, false, payload), "publish "+payload)
		m, ok := box.wait(payload, timeout)
		check(ok, "%s not received", payload)
		check(!ok || m.QoS == qos, "%s received at QoS %d, want %d", payload, m.QoS, qos)
	}

	// Downgrade: QoS 2 on the QoS 1 wildcard subscription p/+/x arrives at QoS 1.
	done(pub.Publish(p+"/d/x", 2, false, p+"-downgrade"), "publish downgrade")
	if m, ok := box.wait(p+"-downgrade", timeout); !ok {
		check(false, "downgrade message not received")
	} else {
		check(m.QoS == 1, "QoS 2 message on a QoS 1 '+' subscription received at QoS %d, want 1", m.QoS)
	}

	// Retained: stored, sent with RETAIN 1 to a new subscription, then cleared.
	done(pub.Publish(p+"/retained", 1, true, p+"-retained"), "publish retained")
	late := &inbox{}
	lateClient, _ := connect(options(*url, p+"-late", true, late), "late subscriber")
	done(lateClient.Subscribe(p+"/retained", 1, late.handler), "late subscribe")
	if m, ok := late.wait(p+"-retained", timeout); !ok {
		check(false, "retained message not received by a new subscription")
	} else {
		check(m.Retain, "retained message received without RETAIN 1")
	}
	done(pub.Publish(p+"/retained", 1, true, ""), "clear retained")

	// Will: published when the server closes the connection (another client takes its id).
	done(lateClient.Subscribe(p+"/will", 1, late.handler), "subscribe will")
	wo := options(*url, p+"-will", true, nil).SetWill(p+"/will", p+"-will", 1, false)
	willClient, _ := connect(wo, "will client")
	taker, _ := connect(options(*url, p+"-will", true, nil), "takeover")
	_, ok := late.wait(p+"-will", timeout)
	check(ok, "Will not published after the server closed the connection")
	taker.Disconnect(100)
	willClient.Disconnect(0)

	// Persistent session: a QoS 1 message published while the subscriber is away is
	// delivered on resume, with Session Present 1 and no new SUBSCRIBE.
	sub.Disconnect(250)
	done(pub.Publish(p+"/q/offline", 1, false, p+"-offline"), "publish while offline")
	sub, present = connect(options(*url, p+"-sub", false, box), "resume")
	check(present, "resumed persistent session: Session Present 1")
	if m, ok := box.wait(p+"-offline", timeout); !ok {
		check(false, "message queued while offline not delivered on resume")
	} else {
		check(m.QoS == 1, "queued message at QoS %d, want 1", m.QoS)
	}

	// Unsubscribe: nothing more on p/q/#; a later message on p/+/x fences the check.
	done(sub.Unsubscribe(p+"/q/#"), "unsubscribe")
	done(pub.Publish(p+"/q/after", 1, false, p+"-after-unsubscribe"), "publish after unsubscribe")
	done(pub.Publish(p+"/f/x", 1, false, p+"-fence"), "publish fence")
	_, ok = box.wait(p+"-fence", timeout)
	check(ok, "fence message not received")
	check(box.count(p+"-after-unsubscribe") == 0, "message received after unsubscribe")

	// End the persistent session so a rerun starts clean.
	sub.Disconnect(100)
	cleaner, _ := connect(options(*url, p+"-sub", true, nil), "clean session")
	cleaner.Disconnect(100)
	lateClient.Disconnect(100)
	pub.Disconnect(100)

	out, _ := json.Marshal(map[string]any{"ok": len(failures) == 0, "failures": failures, "received": box.msgs})
	fmt.Println(string(out))
	if len(failures) > 0 {
		os.Exit(1)
	}
}
