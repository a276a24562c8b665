"""The Device Shadow service of a running Outpost, through AWS's own clients unchanged: boto3
`iot-data` (GetThingShadow, UpdateThingShadow, DeleteThingShadow, ListNamedShadowsForThing and
their errors), paho on the reserved MQTT topics, and AWS's device SDK for Python (`awsiotsdk`,
its `iotshadow` client over an `awscrt` MQTT connection).

Run by tests/shadows.rs with OUTPOST_HTTP_ENDPOINT and OUTPOST_MQTT_PORT set.
"""

import json
import os
import queue

import boto3
import paho.mqtt.client as mqtt
import pytest
from botocore.exceptions import ClientError
from conftest import CREDENTIALS, code, eventually, name, status

ENDPOINT = os.environ["OUTPOST_HTTP_ENDPOINT"]
MQTT_PORT = int(os.environ["OUTPOST_MQTT_PORT"])


@pytest.fixture(scope="module")
def iot():
    return boto3.client("iot-data", endpoint_url=ENDPOINT, **CREDENTIALS)


def doc(response):
    return json.loads(response["payload"].read())


class Paho:
    """A paho MQTT 5 client that collects what arrives per topic."""

    def __init__(self, filters):
        self.got = {}
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=name("paho"),
                             protocol=mqtt.MQTTv5)
        self.c.on_message = lambda c, u, m: self.got.setdefault(m.topic, queue.Queue()).put(
            json.loads(m.payload))
        subscribed = queue.Queue()
        self.c.on_subscribe = lambda c, u, mid, codes, p: subscribed.put(codes)
        self.c.connect("127.0.0.1", MQTT_PORT)
        self.c.loop_start()
        for f in filters:
            self.c.subscribe(f, qos=1)
            codes = subscribed.get(timeout=10)
            assert not codes[0].is_failure, codes

    def next(self, topic, timeout=10):
        eventually(f"a message on {topic}", lambda: topic in self.got, timeout)
        return self.got[topic].get(timeout=timeout)

    def publish(self, topic, body):
        self.c.publish(topic, body if isinstance(body, (bytes, str)) else json.dumps(body),
                       qos=1).wait_for_publish(10)

    def close(self):
        self.c.loop_stop()
        self.c.disconnect()


def test_update_get_delta_and_versions(iot):
    thing = name("lamp")
    base = f"$aws/things/{thing}/shadow"
    dev = Paho([f"{base}/update/delta", f"{base}/update/documents"])
    try:
        r = doc(iot.update_thing_shadow(thingName=thing, payload=json.dumps(
            {"state": {"desired": {"color": "red", "power": {"on": True}}}, "clientToken": "app-1"})))
        assert r["state"] == {"desired": {"color": "red", "power": {"on": True}}}
        assert r["version"] == 1 and r["clientToken"] == "app-1"
        assert isinstance(r["metadata"]["desired"]["power"]["on"]["timestamp"], int)
        delta = dev.next(f"{base}/update/delta")
        assert delta["state"] == {"color": "red", "power": {"on": True}}
        assert delta["version"] == 1 and delta["clientToken"] == "app-1"
        docs = dev.next(f"{base}/update/documents")
        assert docs["previous"] is None and docs["current"]["version"] == 1

        # The device reports: the delta is what still differs.
        doc(iot.update_thing_shadow(thingName=thing, payload=json.dumps(
            {"state": {"reported": {"color": "red", "power": {"on": False}}}})))
        g = doc(iot.get_thing_shadow(thingName=thing))
        assert g["version"] == 2
        assert g["state"]["delta"] == {"power": {"on": True}}
        assert g["state"]["reported"] == {"color": "red", "power": {"on": False}}
        docs = dev.next(f"{base}/update/documents")
        assert docs["previous"]["version"] == 1 and docs["current"]["version"] == 2

        # Optimistic locking, and null deleting a key.
        with pytest.raises(ClientError) as e:
            iot.update_thing_shadow(thingName=thing, payload=json.dumps(
                {"state": {"desired": {"color": "blue"}}, "version": 1}))
        assert code(e) == "ConflictException" and status(e) == 409
        r = doc(iot.update_thing_shadow(thingName=thing, payload=json.dumps(
            {"state": {"desired": {"power": None}}, "version": 2})))
        assert r["version"] == 3
        g = doc(iot.get_thing_shadow(thingName=thing))
        assert g["state"]["desired"] == {"color": "red"} and "delta" not in g["state"]

        # Delete keeps the version: the next shadow continues from it.
        d = doc(iot.delete_thing_shadow(thingName=thing))
        assert d["version"] == 3
        with pytest.raises(ClientError) as e:
            iot.get_thing_shadow(thingName=thing)
        assert code(e) == "ResourceNotFoundException" and status(e) == 404
        r = doc(iot.update_thing_shadow(thingName=thing, payload=json.dumps(
            {"state": {"reported": {"color": "red"}}})))
        assert r["version"] == 4
    finally:
        dev.close()


def test_named_shadows_are_listed_in_pages(iot):
    thing = name("meter")
    for n in ["cfg", "alarms", "firmware"]:
        iot.update_thing_shadow(thingName=thing, shadowName=n,
                                payload=json.dumps({"state": {"reported": {"n": n}}}))
    first = iot.list_named_shadows_for_thing(thingName=thing, pageSize=2)
    assert first["results"] == ["alarms", "cfg"]
    rest = iot.list_named_shadows_for_thing(thingName=thing, pageSize=2,
                                           nextToken=first["nextToken"])
    assert rest["results"] == ["firmware"] and "nextToken" not in rest
    g = doc(iot.get_thing_shadow(thingName=thing, shadowName="cfg"))
    assert g["state"]["reported"] == {"n": "cfg"}
    with pytest.raises(ClientError) as e:
        iot.get_thing_shadow(thingName=thing)
    assert code(e) == "ResourceNotFoundException", "the classic shadow is another shadow"
    iot.delete_thing_shadow(thingName=thing, shadowName="cfg")
    assert iot.list_named_shadows_for_thing(thingName=thing)["results"] == ["alarms", "firmware"]


@pytest.mark.parametrize("payload,message", [
    ({"x": 1}, "Missing required node: state"),
    ({"state": 3}, "State node must be an object"),
    ({"state": {"desired": 3}}, "Desired node must be an object"),
    ({"state": {"other": {}}}, "State contains an invalid node"),
    ({"state": {"desired": {}}, "clientToken": "t" * 65}, "Invalid clientToken"),
    ({"state": {"desired": {"a": {"b": {"c": {"d": {"e": {"f": {"g": 1}}}}}}}}},
     "JSON contains too many levels of nesting; maximum is 6"),
])
def test_bad_documents_are_refused_with_aws_messages(iot, payload, message):
    with pytest.raises(ClientError) as e:
        iot.update_thing_shadow(thingName=name("bad"), payload=json.dumps(payload))
    assert code(e) == "InvalidRequestException" and status(e) == 400
    assert e.value.response["Error"]["Message"] == message


def test_limits(iot):
    with pytest.raises(ClientError) as e:
        iot.update_thing_shadow(thingName=name("big"), payload=json.dumps(
            {"state": {"reported": {"blob": "x" * 9000}}}))
    assert code(e) == "RequestEntityTooLargeException" and status(e) == 413
    with pytest.raises(ClientError) as e:
        iot.get_thing_shadow(thingName="no spaces allowed")
    assert status(e) == 400
    with pytest.raises(ClientError) as e:
        iot.update_thing_shadow(thingName=name("t"), payload=b"{not json")
    assert e.value.response["Error"]["Message"] == "Invalid JSON"


def test_mqtt_requests_get_answers_with_client_tokens():
    thing = name("valve")
    base = f"$aws/things/{thing}/shadow"
    dev = Paho([f"{base}/get/accepted", f"{base}/get/rejected", f"{base}/update/accepted",
                f"{base}/update/rejected", f"{base}/delete/accepted"])
    try:
        dev.publish(f"{base}/get", {"clientToken": "g0"})
        r = dev.next(f"{base}/get/rejected")
        assert r["code"] == 404 and r["clientToken"] == "g0"
        assert r["message"] == f"No shadow exists with name: {thing}"
        dev.publish(f"{base}/update", {"state": {"reported": {"open": True}}, "clientToken": "u1"})
        a = dev.next(f"{base}/update/accepted")
        assert a["clientToken"] == "u1" and a["version"] == 1
        dev.publish(f"{base}/update", "{broken")
        r = dev.next(f"{base}/update/rejected")
        assert r["code"] == 400 and r["message"] == "Invalid JSON"
        dev.publish(f"{base}/get", {"clientToken": "g1"})
        g = dev.next(f"{base}/get/accepted")
        assert g["clientToken"] == "g1" and g["state"]["reported"] == {"open": True}
        dev.publish(f"{base}/delete", "")
        assert dev.next(f"{base}/delete/accepted")["version"] == 1
    finally:
        dev.close()


def test_aws_device_sdk_shadow_client(iot):
    """AWS's device SDK (`awsiotsdk`'s `iotshadow` over `awscrt` MQTT), unchanged: the device
    subscribes to its delta, an application sets `desired` with boto3, the device reports it."""
    from awscrt import io, mqtt as crt
    from awsiot import iotshadow

    thing = name("sdk")
    elg = io.EventLoopGroup(1)
    bootstrap = io.ClientBootstrap(elg, io.DefaultHostResolver(elg))
    conn = crt.Connection(client=crt.Client(bootstrap, None), host_name="127.0.0.1",
                          port=MQTT_PORT, client_id=name("device"), clean_session=True,
                          keep_alive_secs=30)
    conn.connect().result(10)
    try:
        shadow = iotshadow.IotShadowClient(conn)
        deltas, accepted = queue.Queue(), queue.Queue()
        fut, _ = shadow.subscribe_to_shadow_delta_updated_events(
            request=iotshadow.ShadowDeltaUpdatedSubscriptionRequest(thing_name=thing),
            qos=crt.QoS.AT_LEAST_ONCE, callback=deltas.put)
        fut.result(10)
        fut, _ = shadow.subscribe_to_update_shadow_accepted(
            request=iotshadow.UpdateShadowSubscriptionRequest(thing_name=thing),
            qos=crt.QoS.AT_LEAST_ONCE, callback=accepted.put)
        fut.result(10)

        iot.update_thing_shadow(thingName=thing, payload=json.dumps(
            {"state": {"desired": {"speed": 3}}}))
        delta = deltas.get(timeout=10)
        assert delta.state == {"speed": 3} and delta.version == 1
        assert accepted.get(timeout=10).state.desired == {"speed": 3}

        shadow.publish_update_shadow(
            iotshadow.UpdateShadowRequest(thing_name=thing, client_token="dev-1",
                                          state=iotshadow.ShadowState(reported={"speed": 3})),
            crt.QoS.AT_LEAST_ONCE).result(10)
        mine = accepted.get(timeout=10)
        assert mine.client_token == "dev-1" and mine.version == 2
        g = doc(iot.get_thing_shadow(thingName=thing))
        assert g["state"]["reported"] == {"speed": 3} and "delta" not in g["state"]
    finally:
        conn.disconnect().result(10)
