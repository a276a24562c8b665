"""TLS listeners of a running Outpost, from Python's own TLS stack: paho over WebSocket-TLS with
a required client certificate, boto3 over HTTPS, protocol versions, and a server certificate
reloaded on SIGHUP while a connection stays open.

Run by tests/tls.rs with OUTPOST_TLS_DIR (the generated certificates), OUTPOST_MQTTS,
OUTPOST_WSS (host:port/path), OUTPOST_HTTPS and OUTPOST_PID set.
"""

import os
import queue
import shutil
import signal
import socket
import ssl
import time

import boto3
import paho.mqtt.client as mqtt
import pytest
from botocore.exceptions import SSLError
from conftest import name

D = os.environ["OUTPOST_TLS_DIR"]
MQTTS_PORT = int(os.environ["OUTPOST_MQTTS"].rsplit(":", 1)[1])
WSS = os.environ["OUTPOST_WSS"]
WSS_PORT = int(WSS.split("/", 1)[0].rsplit(":", 1)[1])
WSS_PATH = "/" + WSS.split("/", 1)[1]
HTTPS_PORT = int(os.environ["OUTPOST_HTTPS"].rsplit(":", 1)[1])
PID = int(os.environ["OUTPOST_PID"])


def p(name):
    return os.path.join(D, name)


class Client:
    """A paho MQTT 5 client over TLS; `rc` is its CONNACK result or the connection error."""

    def __init__(self, transport, port, cert=None, user=None):
        self.events = queue.Queue()
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=name("tls"),
                             protocol=mqtt.MQTTv5, transport=transport)
        if transport == "websockets":
            self.c.ws_set_options(path=WSS_PATH)
        if cert:
            self.c.tls_set(ca_certs=p("ca.pem"), certfile=p(cert + ".pem"),
                           keyfile=p(cert + ".key"))
        else:
            self.c.tls_set(ca_certs=p("ca.pem"))
        if user:
            self.c.username_pw_set(*user)
        self.c.on_connect = lambda c, u, f, rc, props: self.events.put(("connect", rc))
        self.c.on_publish = lambda c, u, mid, rc, props: self.events.put(("publish", rc))
        try:
            self.c.connect("localhost", port)
        except (ssl.SSLError, OSError) as e:
            self.rc = e
            return
        self.c.loop_start()
        try:
            self.rc = self.wait("connect")
        except queue.Empty:
            self.rc = "no CONNACK"

    def wait(self, kind, timeout=10):
        deadline = time.time() + timeout
        while True:
            k, v = self.events.get(timeout=max(0.01, deadline - time.time()))
            if k == kind:
                return v

    def publish(self, topic):
        self.c.publish(topic, b"x", qos=1)
        return self.wait("publish")

    def close(self):
        self.c.loop_stop()
        self.c.disconnect()


def test_websocket_tls_requires_a_client_certificate():
    c = Client("websockets", WSS_PORT, cert="client")
    assert c.rc == 0, c.rc
    assert not c.publish("devices/device-7/telemetry").is_failure
    assert c.publish("devices/other/telemetry").value == 0x87
    c.close()
    # Without a certificate the handshake is refused (or the connection dies before CONNACK).
    c = Client("websockets", WSS_PORT, user=("alice", "alice-secret"))
    assert c.rc != 0
    # With a certificate from another CA too.
    c = Client("websockets", WSS_PORT, cert="stranger")
    assert c.rc != 0


def test_boto3_over_https():
    kw = dict(region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test",
              endpoint_url=f"https://localhost:{HTTPS_PORT}")
    sqs = boto3.client("sqs", verify=p("ca.pem"), **kw)
    url = sqs.create_queue(QueueName=name("tls"))["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="over TLS")
    assert sqs.receive_message(QueueUrl=url, WaitTimeSeconds=5)["Messages"][0]["Body"] == \
        "over TLS"
    # A client that does not trust the server's CA refuses it.
    with pytest.raises(SSLError):
        boto3.client("sqs", verify=p("stranger.pem"), **kw).list_queues()


def handshake(port, minimum=None, maximum=None):
    ctx = ssl.create_default_context(cafile=p("ca.pem"))
    if minimum:
        ctx.minimum_version = minimum
    if maximum:
        ctx.maximum_version = maximum
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        with ctx.wrap_socket(s, server_hostname="localhost") as t:
            return t.version(), t.getpeercert()


@pytest.mark.parametrize("port", [MQTTS_PORT, HTTPS_PORT])
def test_tls_1_2_and_1_3_only(port):
    assert handshake(port, minimum=ssl.TLSVersion.TLSv1_3)[0] == "TLSv1.3"
    assert handshake(port, maximum=ssl.TLSVersion.TLSv1_2)[0] == "TLSv1.2"
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(p("ca.pem"))
    ctx.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    try:
        ctx.set_ciphers("ALL:@SECLEVEL=0")
    except ssl.SSLError:
        pass
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        with pytest.raises(ssl.SSLError):
            ctx.wrap_socket(s, server_hostname="localhost")


def subject_cn(cert):
    for rdn in cert["subject"]:
        for k, v in rdn:
            if k == "commonName":
                return v
    return None


def test_certificate_reloads_on_sighup_without_dropping_connections():
    before = handshake(MQTTS_PORT)[1]
    assert subject_cn(before) == "localhost"
    c = Client("tcp", MQTTS_PORT, user=("alice", "alice-secret"))
    assert c.rc == 0, c.rc
    shutil.copy(p("renewed.pem"), p("server.pem"))
    shutil.copy(p("renewed.key"), p("server.key"))
    os.kill(PID, signal.SIGHUP)
    deadline = time.time() + 10
    while subject_cn(handshake(MQTTS_PORT)[1]) != "localhost-renewed":
        assert time.time() < deadline, "the renewed certificate was never served"
        time.sleep(0.05)
    # The connection made before the reload is still served.
    assert not c.publish("devices/alice/t").is_failure
    c.close()
