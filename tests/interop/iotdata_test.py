"""The AWS IoT data API (boto3 `iot-data`) of a running Outpost: HTTP publish reaching paho
subscribers (with MQTT 5 properties) and the event rules, retained messages, and a client's
connection, subscriptions and forced disconnect.

Run by tests/events.rs with OUTPOST_HTTP_ENDPOINT and OUTPOST_MQTT_PORT set.
"""

import base64
import json
import os
import queue
import time

import boto3
import paho.mqtt.client as mqtt
import pytest
from botocore.exceptions import ClientError
from conftest import CREDENTIALS, code, name

ENDPOINT = os.environ["OUTPOST_HTTP_ENDPOINT"]
MQTT_PORT = int(os.environ["OUTPOST_MQTT_PORT"])
KW = dict(endpoint_url=ENDPOINT, **CREDENTIALS)


@pytest.fixture(scope="module")
def iot():
    return boto3.client("iot-data", **KW)


class Sub:
    """A paho MQTT 5 subscriber collecting messages."""

    def __init__(self, filters, client_id=None, clean=True, expiry=None):
        self.got = queue.Queue()
        self.disconnects = queue.Queue()
        self.client_id = client_id or name("sub")
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id,
                             protocol=mqtt.MQTTv5)
        self.c.on_message = lambda c, u, m: self.got.put(m)
        self.c.on_disconnect = lambda c, u, flags, rc, props: self.disconnects.put(rc)
        props = None
        if expiry is not None:
            from paho.mqtt.packettypes import PacketTypes
            from paho.mqtt.properties import Properties
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = expiry
        subscribed = queue.Queue()
        self.c.on_subscribe = lambda c, u, mid, codes, p: subscribed.put(codes)
        self.c.connect("127.0.0.1", MQTT_PORT, clean_start=clean, properties=props)
        self.c.loop_start()
        for f in filters:
            self.c.subscribe(f, qos=1)
            subscribed.get(timeout=10)

    def next(self, timeout=10):
        return self.got.get(timeout=timeout)

    def close(self):
        self.c.loop_stop()
        self.c.disconnect()


def test_publish_reaches_mqtt_subscribers_with_properties(iot):
    topic = name("http") + "/cmd"
    sub = Sub([topic])
    iot.publish(
        topic=topic, qos=1, payload=b'{"go": true}',
        userProperties=json.dumps([{"site": "lyon"}, {"line": "3"}]),
        payloadFormatIndicator="UTF8_DATA", contentType="application/json",
        responseTopic=f"{topic}/reply", correlationData=base64.b64encode(b"req-7").decode(),
        messageExpiry=3600,
    )
    m = sub.next()
    assert m.topic == topic and m.payload == b'{"go": true}' and m.qos == 1
    p = m.properties
    assert p.UserProperty == [("site", "lyon"), ("line", "3")]
    assert p.ContentType == "application/json"
    assert p.ResponseTopic == f"{topic}/reply"
    assert p.CorrelationData == b"req-7"
    assert p.PayloadFormatIndicator == 1
    assert 3590 <= p.MessageExpiryInterval <= 3600
    iot.publish(topic=topic, payload=b"\x00\x01binary")
    m = sub.next()
    assert m.payload == b"\x00\x01binary" and m.qos == 0
    sub.close()


def test_retained_messages(iot):
    base = name("ret")
    topics = [f"{base}/{i}" for i in range(5)]
    for i, t in enumerate(topics):
        iot.publish(topic=t, qos=1, retain=True, payload=f"value {i}".encode(),
                    userProperties=json.dumps([{"i": str(i)}]))
    got = iot.get_retained_message(topic=topics[2])
    assert got["topic"] == topics[2] and got["payload"] == b"value 2" and got["qos"] == 1
    assert json.loads(got["userProperties"]) == [{"i": "2"}]
    seen, token = [], None
    while True:
        kw = {"nextToken": token} if token else {}
        page = iot.list_retained_messages(maxResults=2, **kw)
        assert len(page["retainedTopics"]) <= 2
        seen += [r["topic"] for r in page["retainedTopics"] if r["topic"].startswith(base)]
        token = page.get("nextToken")
        if not token:
            break
    assert seen == topics
    sizes = {r["topic"]: r["payloadSize"] for r in iot.list_retained_messages(maxResults=200)["retainedTopics"]}
    assert sizes[topics[0]] == len(b"value 0")
    # A new subscriber gets it over MQTT; an empty retained publish clears it.
    sub = Sub([topics[3]])
    assert sub.next().payload == b"value 3"
    sub.close()
    iot.publish(topic=topics[3], retain=True, payload=b"")
    with pytest.raises(ClientError) as e:
        iot.get_retained_message(topic=topics[3])
    assert code(e) == "ResourceNotFoundException"


def test_publish_errors(iot):
    with pytest.raises(ClientError) as e:
        iot.publish(topic="a/#", payload=b"x")
    assert code(e) == "InvalidRequestException"
    with pytest.raises(ClientError) as e:
        iot.publish(topic="$SYS/fake", payload=b"x")
    assert code(e) == "InvalidRequestException"
    with pytest.raises(ClientError) as e:
        iot.publish(topic="/".join(["l"] * 1000), payload=b"x")
    assert code(e) == "InvalidRequestException"
    with pytest.raises(ClientError) as e:
        iot.publish(topic="ok/topic", payload=b"\xff\xfe", payloadFormatIndicator="UTF8_DATA")
    assert code(e) == "InvalidRequestException"
    with pytest.raises(ClientError) as e:
        iot.publish(topic="ok/topic", payload=b"x", correlationData="not base64!")
    assert code(e) == "InvalidRequestException"
    import urllib.request
    req = urllib.request.Request(ENDPOINT + "/topics/ok?qos=2", data=b"x", method="POST")
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=10)
    assert e.value.code == 400 and e.value.headers["x-amzn-ErrorType"] == "InvalidRequestException"
    assert json.loads(e.value.read())["message"]
    req = urllib.request.Request(ENDPOINT + "/retainedMessage/x", method="DELETE")
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=10)
    assert e.value.code == 405


def test_http_publish_is_an_event(iot):
    sqs = boto3.client("sqs", **KW)
    events = boto3.client("events", **KW)
    qname = name("q")
    url = sqs.create_queue(QueueName=qname)["QueueUrl"]
    topic = name("plant") + "/telemetry"
    rname = name("r")
    events.put_rule(Name=rname, EventPattern=json.dumps(
        {"source": ["outpost.mqtt"], "detail-type": [topic], "detail": {"temp": [{"numeric": [">", 50]}]}}))
    events.put_targets(Rule=rname, Targets=[{"Id": "q", "Arn": f"arn:aws:sqs:us-east-1:000000000000:{qname}"}])
    iot.publish(topic=topic, qos=1, payload=json.dumps({"temp": 20}).encode())
    iot.publish(topic=topic, qos=1, payload=json.dumps({"temp": 61}).encode())
    msgs = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=5, MaxNumberOfMessages=10).get("Messages", [])
    assert len(msgs) == 1, msgs
    event = json.loads(msgs[0]["Body"])
    assert event["detail"] == {"temp": 61} and event["resources"] == []


def test_connections(iot):
    sub = Sub(["a/+/x", "b/#"], expiry=600)
    info = iot.get_connection(clientId=sub.client_id)
    assert info["connected"] is True and info["cleanSession"] is False
    assert info["clientId"] == sub.client_id and info["sessionExpiry"] == 600
    subs = iot.list_subscriptions(clientId=sub.client_id)["subscriptions"]
    assert subs == [{"topicFilter": "a/+/x", "qos": 1}, {"topicFilter": "b/#", "qos": 1}]
    page = iot.list_subscriptions(clientId=sub.client_id, maxResults=1)
    assert len(page["subscriptions"]) == 1 and page["nextToken"]
    rest = iot.list_subscriptions(clientId=sub.client_id, maxResults=1, nextToken=page["nextToken"])
    assert rest["subscriptions"] == [{"topicFilter": "b/#", "qos": 1}] and "nextToken" not in rest
    # Disconnected, session kept.
    iot.delete_connection(clientId=sub.client_id)
    rc = sub.disconnects.get(timeout=10)
    assert rc == 0x98, rc
    sub.c.loop_stop()
    deadline = time.monotonic() + 10
    while iot.get_connection(clientId=sub.client_id)["connected"]:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    info = iot.get_connection(clientId=sub.client_id)
    assert info["disconnectedSince"] > 0
    # Now the session too.
    iot.delete_connection(clientId=sub.client_id, cleanSession=True)
    with pytest.raises(ClientError) as e:
        iot.get_connection(clientId=sub.client_id)
    assert code(e) == "ResourceNotFoundException"
    with pytest.raises(ClientError) as e:
        iot.delete_connection(clientId=name("nobody"))
    assert code(e) == "ResourceNotFoundException"
    with pytest.raises(ClientError) as e:
        iot.list_subscriptions(clientId=name("nobody"))
    assert code(e) == "ResourceNotFoundException"


def test_send_direct_message(iot):
    sub = Sub([])  # subscribes to nothing
    iot.send_direct_message(clientId=sub.client_id, topic="direct/cmd", payload=b"reboot",
                            contentType="text/plain",
                            userProperties=json.dumps([{"by": "ops"}]))
    m = sub.next()
    assert m.topic == "direct/cmd" and m.payload == b"reboot" and m.qos == 1
    assert m.properties.ContentType == "text/plain"
    assert m.properties.UserProperty == [("by", "ops")]
    with pytest.raises(ClientError) as e:
        iot.send_direct_message(clientId=name("nobody"), topic="direct/cmd", payload=b"x")
    assert code(e) == "ResourceNotFoundException"
    with pytest.raises(ClientError) as e:
        iot.send_direct_message(clientId=sub.client_id, topic="a/#", payload=b"x")
    assert code(e) == "InvalidRequestException"
    sub.close()
