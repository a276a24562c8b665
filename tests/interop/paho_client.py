#!/usr/bin/env python3
"""An independent client for the end-to-end tests: paho-mqtt (Eclipse Paho, Python).

usage: paho_client.py tcp|websockets HOST PORT [PATH]
Connects with MQTT 5, subscribes to a topic with QoS 1, publishes QoS 1 to it, and exits 0 once the
message came back (1 on timeout or error). Prints what it received.
"""
import sys
import threading

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

transport, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
path = sys.argv[4] if len(sys.argv) > 4 else "/mqtt"
got = threading.Event()
subscribed = threading.Event()


def on_connect(client, userdata, flags, reason_code, properties):
    client.subscribe("paho/test", qos=1)


def on_subscribe(client, userdata, mid, reason_codes, properties):
    subscribed.set()


def on_message(client, userdata, msg):
    print(f"{msg.topic} {msg.payload.decode()} qos={msg.qos}")
    got.set()


client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"paho-{transport}", transport=transport, protocol=mqtt.MQTTv5)
if transport == "websockets":
    client.ws_set_options(path=path)
client.on_connect = on_connect
client.on_subscribe = on_subscribe
client.on_message = on_message
client.connect(host, port)
client.loop_start()
if not subscribed.wait(10):
    print("no SUBACK", file=sys.stderr)
    sys.exit(1)
client.publish("paho/test", f"hello over {transport}", qos=1).wait_for_publish(10)
ok = got.wait(10)
client.disconnect()
client.loop_stop()
sys.exit(0 if ok else 1)
