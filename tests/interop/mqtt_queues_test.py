"""SQS queues over MQTT (`$queue/<name>`) on a running Outpost: paho clients publish into queues
and consume them, boto3 sees the same queues.

Run by tests/events.rs with OUTPOST_HTTP_ENDPOINT and OUTPOST_MQTT_PORT set.
"""

import json
import os
import queue
import threading
import time

import boto3
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from conftest import CREDENTIALS, name

ENDPOINT = os.environ["OUTPOST_HTTP_ENDPOINT"]
MQTT_PORT = int(os.environ["OUTPOST_MQTT_PORT"])
KW = dict(endpoint_url=ENDPOINT, **CREDENTIALS)


@pytest.fixture(scope="module")
def sqs():
    return boto3.client("sqs", **KW)


def new_queue(sqs, fifo=False, **attrs):
    qname = name("q") + (".fifo" if fifo else "")
    attributes = {k: str(v) for k, v in attrs.items()}
    if fifo:
        attributes["FifoQueue"] = "true"
    url = sqs.create_queue(QueueName=qname, Attributes=attributes)["QueueUrl"]
    return qname, url


class Client:
    """A paho client that records what it receives; with manual_ack it acknowledges only when told."""

    def __init__(self, v5=True, manual_ack=False, receive_maximum=None):
        self.got = queue.Queue()
        self.acks = queue.Queue()
        self.disconnected = threading.Event()
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=name("c"),
                             protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311, manual_ack=manual_ack)
        self.c.on_message = lambda c, u, m: self.got.put(m)
        self.c.on_publish = lambda c, u, mid, rc, props: self.acks.put((mid, rc))
        self.c.on_disconnect = lambda *a: self.disconnected.set()
        subscribed = queue.Queue()
        self.c.on_subscribe = lambda c, u, mid, codes, p: subscribed.put(codes)
        self._subscribed = subscribed
        props = None
        if receive_maximum is not None:
            props = Properties(PacketTypes.CONNECT)
            props.ReceiveMaximum = receive_maximum
        if v5:
            self.c.connect("127.0.0.1", MQTT_PORT, properties=props)
        else:
            self.c.connect("127.0.0.1", MQTT_PORT)
        self.c.loop_start()

    def subscribe(self, topic, qos=1):
        self.c.subscribe(topic, qos=qos)
        return self._subscribed.get(timeout=10)

    def next(self, timeout=10):
        return self.got.get(timeout=timeout)

    def none_within(self, seconds):
        try:
            m = self.got.get(timeout=seconds)
        except queue.Empty:
            return True
        raise AssertionError(f"unexpected message {m.topic} {m.payload!r}")

    def close(self):
        self.c.loop_stop()
        self.c.disconnect()


def props(pairs):
    p = Properties(PacketTypes.PUBLISH)
    p.UserProperty = pairs
    return p


def test_publish_to_queue_is_a_send(sqs):
    qname, url = new_queue(sqs)
    pub = Client()
    info = pub.c.publish(f"$queue/{qname}", "job 1", qos=1, properties=props([("priority", "high")]))
    info.wait_for_publish(timeout=10)
    mid, rc = pub.acks.get(timeout=10)
    assert rc == 0, rc
    msgs = sqs.receive_message(QueueUrl=url, MessageAttributeNames=["All"], WaitTimeSeconds=2)["Messages"]
    assert msgs[0]["Body"] == "job 1"
    assert msgs[0]["MessageAttributes"]["priority"] == {"StringValue": "high", "DataType": "String"}
    pub.close()


def test_publish_to_unknown_queue_is_refused():
    pub = Client()
    pub.c.publish("$queue/" + name("missing"), "x", qos=1)
    mid, rc = pub.acks.get(timeout=10)
    assert rc == 0x90, rc
    pub.close()
    old = Client(v5=False)
    old.c.publish("$queue/" + name("missing"), "x", qos=1)
    assert old.disconnected.wait(10), "MQTT 3.1.1 publisher to an unknown queue is disconnected"
    old.c.loop_stop()


def test_subscribe_to_unknown_queue_is_refused():
    c = Client()
    codes = c.subscribe("$queue/" + name("missing"))
    assert codes[0].value >= 0x80, codes
    c.close()


def test_each_message_goes_to_exactly_one_consumer(sqs):
    qname, url = new_queue(sqs)
    a, b = Client(), Client()
    for c in (a, b):
        codes = c.subscribe(f"$queue/{qname}")
        assert codes[0].value == 1, codes
    for i in range(40):
        sqs.send_message(QueueUrl=url, MessageBody=f"m{i}", MessageAttributes={
            "n": {"DataType": "Number", "StringValue": str(i)}})
    seen = []
    per = {"a": 0, "b": 0}
    deadline = time.monotonic() + 20
    while len(seen) < 40:
        assert time.monotonic() < deadline, f"only {len(seen)} of 40 arrived"
        for label, c in (("a", a), ("b", b)):
            try:
                m = c.got.get(timeout=0.05)
            except queue.Empty:
                continue
            assert m.topic == f"$queue/{qname}"
            up = dict(m.properties.UserProperty)
            assert up["n"] == m.payload.decode()[1:]
            assert up["MessageId"] and up["ApproximateReceiveCount"] == "1"
            seen.append(m.payload.decode())
            per[label] += 1
    assert sorted(seen) == sorted(f"m{i}" for i in range(40)), "a message went to two consumers or none"
    a.none_within(0.5)
    b.none_within(0.1)
    # PUBACKs deleted them.
    deadline = time.monotonic() + 10
    while True:
        attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        if attrs["ApproximateNumberOfMessages"] == "0" and attrs["ApproximateNumberOfMessagesNotVisible"] == "0":
            break
        assert time.monotonic() < deadline, attrs
        time.sleep(0.1)
    a.close()
    b.close()


def test_unacknowledged_message_goes_to_the_next_consumer(sqs):
    qname, url = new_queue(sqs, VisibilityTimeout=2)
    lazy = Client(manual_ack=True)
    lazy.subscribe(f"$queue/{qname}")
    sqs.send_message(QueueUrl=url, MessageBody="work")
    m = lazy.next()
    assert m.payload == b"work"
    lazy.close()  # never acknowledged
    other = Client()
    other.subscribe(f"$queue/{qname}")
    m = other.next(timeout=10)
    assert m.payload == b"work"
    assert dict(m.properties.UserProperty)["ApproximateReceiveCount"] == "2"
    other.close()


def test_poison_message_moves_to_the_dead_letter_queue(sqs):
    dlq_name, dlq_url = new_queue(sqs)
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    qname, url = new_queue(sqs, VisibilityTimeout=1, RedrivePolicy=json.dumps(
        {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 2}))
    bad = Client(manual_ack=True)
    bad.subscribe(f"$queue/{qname}")
    sqs.send_message(QueueUrl=url, MessageBody="poison")
    assert bad.next().payload == b"poison"
    assert bad.next(timeout=10).payload == b"poison"  # redelivered after the visibility timeout
    msgs = sqs.receive_message(QueueUrl=dlq_url, WaitTimeSeconds=10).get("Messages", [])
    assert [m["Body"] for m in msgs] == ["poison"]
    bad.close()


def test_fifo_queue_keeps_group_order(sqs):
    qname, url = new_queue(sqs, fifo=True, ContentBasedDeduplication="true")
    pub = Client()
    for i in range(10):
        group = "g1" if i % 2 == 0 else "g2"
        pub.c.publish(f"$queue/{qname}", f"{group}-{i}", qos=1,
                      properties=props([("MessageGroupId", group)])).wait_for_publish(timeout=10)
    for _ in range(10):
        assert pub.acks.get(timeout=10)[1] == 0
    # Without a group: refused.
    pub.c.publish(f"$queue/{qname}", "no group", qos=1)
    assert pub.acks.get(timeout=10)[1] >= 0x80
    sub = Client()
    sub.subscribe(f"$queue/{qname}")
    got = [sub.next().payload.decode() for _ in range(10)]
    for g in ("g1", "g2"):
        nums = [int(x.split("-")[1]) for x in got if x.startswith(g)]
        assert nums == sorted(nums) and len(nums) == 5, got
    pub.close()
    sub.close()


def test_window_follows_receive_maximum(sqs):
    qname, url = new_queue(sqs, VisibilityTimeout=60)
    c = Client(manual_ack=True, receive_maximum=2)
    c.subscribe(f"$queue/{qname}")
    for i in range(5):
        sqs.send_message(QueueUrl=url, MessageBody=f"w{i}")
    first = [c.next(), c.next()]
    c.none_within(1.0)
    c.c.ack(first[0].mid, first[0].qos)
    third = c.next()
    assert third.payload not in {m.payload for m in first}
    c.close()


def test_hash_does_not_match_queue_topics(sqs):
    qname, url = new_queue(sqs)
    watcher = Client()
    watcher.subscribe("#")
    pub = Client()
    pub.c.publish(f"$queue/{qname}", "private", qos=1).wait_for_publish(timeout=10)
    assert pub.acks.get(timeout=10)[1] == 0
    watcher.none_within(0.5)
    assert sqs.receive_message(QueueUrl=url, WaitTimeSeconds=2)["Messages"][0]["Body"] == "private"
    watcher.close()
    pub.close()
