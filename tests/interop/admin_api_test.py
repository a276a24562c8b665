"""The admin API against its own OpenAPI description: the description is valid OpenAPI 3.0,
every documented operation is called here, and every answer (success and error) is checked
against the schema the description gives for its status. Also what each operation does, seen
from real clients: paho sees its kick (0x98), boto3 sees that a peek received nothing, a purged
retained message is gone, a one-time MQTT password works once.

tests/admin_api.rs starts the broker with a password file (`operator`, `viewer`), an access key
for `operator`, and an ACL granting `operator` everything and `viewer` only MQTT.
"""
import base64
import json
import os
import re
import threading
import urllib.error
import urllib.request

import boto3
import paho.mqtt.client as mqtt
import pytest
from conftest import eventually, name
from openapi_schema_validator import OAS30Validator
from openapi_spec_validator import validate as validate_spec

HTTP = os.environ["OUTPOST_HTTP_ENDPOINT"]
MQTT_PORT = int(os.environ["OUTPOST_MQTT_PORT"])
OPERATOR = ("operator", "op-secret-1")
VIEWER = ("viewer", "viewer-secret-1")
CALLED = set()


def request(method, path, body=None, auth=OPERATOR, headers=None):
    """(status, headers, JSON or None) of one HTTP call."""
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    req = urllib.request.Request(HTTP + path, data=data, method=method, headers=headers or {})
    if auth:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        req.add_header("Authorization", "Basic " + token)
    if data is not None and not (headers and "Content-Type" in headers):
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            status, hdrs, raw = r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        status, hdrs, raw = e.code, e.headers, e.read()
    return status, hdrs, (json.loads(raw) if raw else None)


@pytest.fixture(scope="module")
def spec():
    status, _, doc = request("GET", "/admin/v1/openapi.json", auth=None)
    assert status == 200
    validate_spec(doc)
    assert doc["openapi"].startswith("3.0")
    return doc


def resolve(doc, node):
    """The schema with every local $ref replaced by what it names."""
    if isinstance(node, dict):
        if "$ref" in node:
            target = doc
            for part in node["$ref"].lstrip("#/").split("/"):
                target = target[part]
            return resolve(doc, target)
        return {k: resolve(doc, v) for k, v in node.items()}
    if isinstance(node, list):
        return [resolve(doc, v) for v in node]
    return node


def operation(doc, method, path):
    """The documented operation a concrete path matches, and its template."""
    bare = path.split("?")[0]
    for template, ops in doc["paths"].items():
        pattern = "^" + re.sub(r"\{[^}]+\}", "[^/]+", template) + "$"
        if re.match(pattern, bare) and method.lower() in ops:
            return template, ops[method.lower()]
    raise AssertionError(f"{method} {bare} is not in the OpenAPI description")


def call(doc, method, path, body=None, auth=OPERATOR, expect=200, headers=None):
    """Calls a documented operation and checks the answer against the description."""
    template, op = operation(doc, method, path)
    status, hdrs, value = request(method, path, body, auth, headers)
    assert status == expect, f"{method} {path}: {status} {value}"
    response = op["responses"].get(str(status))
    assert response is not None, f"{method} {template} answered {status}, which is not documented"
    response = resolve(doc, response)
    content = response.get("content", {}).get("application/json")
    if content is not None:
        OAS30Validator(content["schema"]).validate(value)
    else:
        assert value is None, f"{method} {template} {status} has an undocumented body"
    CALLED.add((method.lower(), template))
    return value, hdrs


class Paho:
    def __init__(self, client_id, auth=OPERATOR, password=None):
        self.gone = threading.Event()
        self.reason = None
        self.refused = None
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        self.c.username_pw_set(auth[0], password or auth[1])
        done = threading.Event()

        def on_connect(c, u, f, rc, p):
            self.refused = rc.value if rc.is_failure else 0
            done.set()

        def on_disconnect(c, u, f, rc, p):
            self.reason = rc.value
            self.gone.set()

        self.c.on_connect = on_connect
        self.c.on_disconnect = on_disconnect
        self.c.connect("127.0.0.1", MQTT_PORT)
        self.c.loop_start()
        assert done.wait(10)

    def close(self):
        self.c.disconnect()
        self.c.loop_stop()


def test_the_description_is_valid_openapi(spec):
    assert "/admin/v1/overview" in spec["paths"]


def test_authentication_and_authorization(spec):
    _, hdrs = call(spec, "GET", "/admin/v1/overview", auth=None, expect=401)
    assert hdrs["WWW-Authenticate"].startswith("Basic")
    call(spec, "GET", "/admin/v1/overview", auth=("operator", "wrong"), expect=401)
    v, _ = call(spec, "GET", "/admin/v1/overview", auth=VIEWER, expect=403)
    assert v["error"] == "AccessDenied" and "outpost:GetOverview" in v["message"]
    v, _ = call(spec, "GET", "/admin/v1/whoami", auth=VIEWER)
    assert v == {"identity": "viewer", "anonymous": False}
    v, _ = call(spec, "GET", "/admin/v1/overview")
    assert v["samples"]["outpost_mqtt_sessions"] >= 0


def test_console_session_cycle(spec):
    call(spec, "POST", "/admin/v1/login", {"username": "operator", "password": "nope"}, auth=None, expect=401)
    call(spec, "POST", "/admin/v1/login", b"not json", auth=None, expect=400)
    v, hdrs = call(spec, "POST", "/admin/v1/login", {"username": "operator", "password": OPERATOR[1]}, auth=None)
    assert v == {"identity": "operator"}
    cookie = hdrs["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    session = cookie.split(";")[0]
    console = {"Cookie": session, "x-outpost-console": "1"}
    v, _ = call(spec, "GET", "/admin/v1/whoami", auth=None, headers=console)
    assert v["identity"] == "operator"
    # The cookie alone (a cross-site form cannot add the header) is not a login.
    call(spec, "GET", "/admin/v1/whoami", auth=None, headers={"Cookie": session}, expect=401)
    call(spec, "POST", "/admin/v1/logout", auth=None, headers=console, expect=204)
    call(spec, "GET", "/admin/v1/whoami", auth=None, headers=console, expect=401)


def test_clients_are_listed_described_and_kicked(spec):
    cid = name("dev")
    p = Paho(cid)
    p.c.subscribe("a/+", qos=1)
    v, _ = call(spec, "GET", "/admin/v1/clients?search=" + cid)
    assert v["total"] == 1 and v["clients"][0]["identity"] == "operator"
    assert v["clients"][0]["protocol"] == "5"
    v = eventually("the subscription", lambda: (lambda d: d if d["subscriptions"] else None)(
        call(spec, "GET", "/admin/v1/clients/" + cid)[0]))
    assert v["subscriptions"] == [{"filter": "a/+", "qos": 1}] and v["connected"]
    call(spec, "DELETE", f"/admin/v1/clients/{cid}/connection?preventWill=true", expect=204)
    assert p.gone.wait(10) and p.reason == 0x98, "Administrative action"
    p.c.loop_stop()
    call(spec, "DELETE", "/admin/v1/clients/nobody-here/connection", expect=404)


def test_a_sessions_held_messages_are_listed(spec):
    cid = name("offline")
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=cid, protocol=mqtt.MQTTv5)
    c.username_pw_set(*OPERATOR)
    props = mqtt.Properties(mqtt.PacketTypes.CONNECT)
    props.SessionExpiryInterval = 3600
    c.connect("127.0.0.1", MQTT_PORT, clean_start=False, properties=props)
    c.loop_start()
    c.subscribe("held/#", qos=1)
    eventually("the session's subscription", lambda: (
        lambda r: r[0] == 200 and r[2]["subscriptions"])(request("GET", "/admin/v1/clients/" + cid)))
    c.disconnect()
    c.loop_stop()
    p = Paho(name("pub"))
    for i in range(3):
        p.c.publish(f"held/{i}", "x" * (10 + i), qos=1).wait_for_publish(10)
    p.close()
    v, _ = call(spec, "GET", f"/admin/v1/clients/{cid}?messages=2")
    assert not v["connected"] and v["queued"] == 3
    assert v["messages"] == [
        {"topic": "held/0", "qos": 1, "bytes": 10, "inFlight": False},
        {"topic": "held/1", "qos": 1, "bytes": 11, "inFlight": False},
    ]
    listed, _ = call(spec, "GET", "/admin/v1/clients?search=" + cid)
    assert listed["clients"][0]["queued"] == 3
    call(spec, "GET", "/admin/v1/clients/nobody-here", expect=404)
    call(spec, "GET", "/admin/v1/clients?limit=-1", expect=400)
    call(spec, "GET", "/admin/v1/clients?limit=ten", expect=400)
    v, _ = call(spec, "GET", "/admin/v1/clients?limit=99999999999999999999999")
    assert v["total"] >= len(v["clients"])
    call(spec, "DELETE", "/admin/v1/clients/x/connection?cleanSession=yes", expect=400)
    status, hdrs, v = request("PUT", "/admin/v1/clients")
    assert status == 405 and hdrs["Allow"] == "GET" and v["error"] == "MethodNotAllowed"


def test_retained_messages_are_listed_peeked_and_purged(spec):
    p = Paho(name("pub"))
    p.c.publish("purged/topic", "keep me?", qos=1, retain=True).wait_for_publish(10)
    p.c.publish("kept/topic", b"\x00\x01", qos=1, retain=True).wait_for_publish(10)
    p.close()
    v, _ = call(spec, "GET", "/admin/v1/retained?limit=1000")
    topics = [r["topic"] for r in v["retained"]]
    assert "purged/topic" in topics and "kept/topic" in topics
    v, _ = call(spec, "GET", "/admin/v1/retained/message?topic=purged/topic")
    assert v["text"] == "keep me?" and base64.b64decode(v["payload"]) == b"keep me?"
    v, _ = call(spec, "GET", "/admin/v1/retained/message?topic=kept/topic")
    assert base64.b64decode(v["payload"]) == b"\x00\x01"
    call(spec, "DELETE", "/admin/v1/retained/message?topic=purged/topic", expect=204)
    call(spec, "GET", "/admin/v1/retained/message?topic=purged/topic", expect=404)
    call(spec, "DELETE", "/admin/v1/retained/message?topic=purged/topic", expect=404)
    call(spec, "GET", "/admin/v1/retained/message", expect=400)
    call(spec, "DELETE", "/admin/v1/retained/message", expect=400)


def test_queues_are_listed_and_peeked_without_receiving(spec):
    sqs = boto3.client("sqs", endpoint_url=HTTP, region_name="us-east-1",
                       aws_access_key_id="AKIDOPERATOR0001", aws_secret_access_key="operator-secret-key-0001")
    q = name("q")
    url = sqs.create_queue(QueueName=q)["QueueUrl"]
    for body in ("one", "two"):
        sqs.send_message(QueueUrl=url, MessageBody=body)
    v, _ = call(spec, "GET", "/admin/v1/queues")
    mine = [x for x in v["queues"] if x["name"] == q][0]
    assert mine["visible"] == 2 and mine["inFlight"] == 0
    v, _ = call(spec, "GET", f"/admin/v1/queues/{q}/messages?max=10")
    assert [m["body"] for m in v["messages"]] == ["one", "two"]
    got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["ApproximateReceiveCount"])
    assert sorted(m["Body"] for m in got["Messages"]) == ["one", "two"]
    assert all(m["Attributes"]["ApproximateReceiveCount"] == "1" for m in got["Messages"]), "the peek received nothing"
    call(spec, "GET", "/admin/v1/queues/no-such-queue/messages", expect=404)


def test_dynamic_security_over_http(spec):
    user = name("svc")
    v, _ = call(spec, "POST", "/admin/v1/dynsec", {"commands": [
        {"command": "createClient", "username": user, "password": "svc-secret"},
        {"command": "getClient", "username": user, "correlationData": "c1"},
    ]})
    assert v["responses"][0] == {"command": "createClient"}
    assert v["responses"][1]["data"]["client"]["username"] == user
    assert v["responses"][1]["correlationData"] == "c1"
    v, _ = call(spec, "POST", "/admin/v1/dynsec", {"commands": [{"command": "listRoles"}] * 101}, expect=400)
    assert "Too many commands" in v["message"]
    call(spec, "POST", "/admin/v1/dynsec", b"not json", expect=400)
    call(spec, "POST", "/admin/v1/dynsec", {"command": "listRoles"}, expect=400)
    call(spec, "POST", "/admin/v1/dynsec", {"commands": []}, auth=VIEWER, expect=403)


def test_one_time_mqtt_passwords(spec):
    v, _ = call(spec, "POST", "/admin/v1/live-token", {})
    assert v["username"] == "operator" and v["clientIdPrefix"] == "outpost-console-" and v["wsPort"]
    first = Paho("outpost-console-" + name("t"), password=v["password"])
    assert first.refused == 0
    first.close()
    second = Paho("outpost-console-" + name("t"), password=v["password"])
    assert second.refused == 0x86, "a one-time password works once"
    second.c.loop_stop()


def test_a_form_of_another_site_cannot_post(spec):
    """A browser holding Basic credentials for the broker would send them with another site's
    form; a form cannot say application/json (nor set the console's header)."""
    form = {"Content-Type": "text/plain"}
    body = json.dumps({"commands": [{"command": "createClient", "username": "csrf", "password": "x"}]}).encode()
    call(spec, "POST", "/admin/v1/dynsec", body, headers=form, expect=415)
    call(spec, "POST", "/admin/v1/live-token", b"", headers=form, expect=415)
    call(spec, "POST", "/admin/v1/login", b"username=operator", auth=None,
         headers={"Content-Type": "application/x-www-form-urlencoded"}, expect=415)
    v, _ = call(spec, "POST", "/admin/v1/dynsec", {"commands": [{"command": "getClient", "username": "csrf"}]})
    assert v["responses"][0]["error"] == "Client not found"


def test_limits_and_unknown_operations(spec):
    status, _, v = request("POST", "/admin/v1/dynsec", b"x" * (300 * 1024))
    assert status == 413 and v["error"] == "RequestEntityTooLarge"
    status, _, v = request("GET", "/admin/v1/no-such-thing")
    assert status == 404 and "openapi.json" in v["message"]


def test_every_documented_operation_was_called(spec):
    documented = {(m, p) for p, ops in spec["paths"].items() for m in ops}
    missing = documented - CALLED - {("get", "/admin/v1/openapi.json")}
    assert not missing, f"documented but never called: {sorted(missing)}"
