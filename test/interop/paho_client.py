"""Interop check with Eclipse Paho (Python): a real, independent MQTT client.

Usage: paho_client.py HOST PORT PROTOCOL (311 | 31) [TRANSPORT (tcp | websockets) [PATH]]
Subscribes, publishes QoS 0/1/2 to itself, checks every message arrives with the
right payload and QoS, then a retained message and a clean disconnect. Prints one
JSON line with the result; exit code 0 only when everything matched.
"""
import json
import sys
import threading
import time

import paho.mqtt.client as mqtt

host, port, proto = sys.argv[1], int(sys.argv[2]), sys.argv[3]
transport = sys.argv[4] if len(sys.argv) > 4 else "tcp"
protocol = mqtt.MQTTv311 if proto == "311" else mqtt.MQTTv31
client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"paho-{proto}-{transport}", protocol=protocol, transport=transport)
if transport == "websockets":
    client.ws_set_options(path=sys.argv[5] if len(sys.argv) > 5 else "/mqtt")
received = []
connected = threading.Event()
subscribed = threading.Event()


def on_connect(c, userdata, flags, reason_code, properties):
    if reason_code == 0:
        connected.set()


def on_subscribe(c, userdata, mid, reason_codes, properties):
    subscribed.set()


def on_message(c, userdata, msg):
    received.append((msg.topic, msg.payload.decode(), msg.qos, bool(msg.retain)))


client.on_connect = on_connect
client.on_subscribe = on_subscribe
client.on_message = on_message
client.connect(host, port, keepalive=30)
client.loop_start()
ok = connected.wait(5)
client.subscribe(f"paho/{proto}/#", qos=2)
ok = ok and subscribed.wait(5)
for qos in (0, 1, 2):
    client.publish(f"paho/{proto}/q{qos}", f"payload-{qos}", qos=qos).wait_for_publish(5)
deadline = time.time() + 5
while len(received) < 3 and time.time() < deadline:
    time.sleep(0.02)
expected = sorted((f"paho/{proto}/q{q}", f"payload-{q}", q, False) for q in (0, 1, 2))
ok = ok and sorted(received) == expected
client.loop_stop()
client.disconnect()
print(json.dumps({"ok": ok, "received": received}))
sys.exit(0 if ok else 1)
