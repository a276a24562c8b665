"""Authentication and authorization of a locked-down Outpost, through boto3 (SQS, SNS,
EventBridge, IoT data), botocore's presigned URLs, a raw unsigned request, and paho.

Run by tests/security.rs with OUTPOST_HTTP_ENDPOINT and OUTPOST_MQTT_PORT set, against a broker
whose access keys are ops (everything), guest (SendMessage to public-* queues only) and partner
(account 111122223333, no ACL rule of its own), and whose password file holds alice.
"""

import os
import queue
import time
import urllib.error
import urllib.parse
import urllib.request

import boto3
import paho.mqtt.client as mqtt
import pytest
from botocore.auth import SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError
from conftest import code, name, status

ENDPOINT = os.environ["OUTPOST_HTTP_ENDPOINT"]
MQTT_PORT = int(os.environ["OUTPOST_MQTT_PORT"])

OPS = ("AKIDOPS000000001", "ops-secret-0123456789")
GUEST = ("AKIDGUEST0000001", "guest-secret-0123456")
PARTNER = ("AKIDPARTNER00001", "partner-secret-01234")


def client(service, key):
    return boto3.client(
        service,
        endpoint_url=ENDPOINT,
        region_name="us-east-1",
        aws_access_key_id=key[0],
        aws_secret_access_key=key[1],
    )


def test_the_right_secret_works_in_every_api():
    sqs = client("sqs", OPS)
    url = sqs.create_queue(QueueName=name("ops"))["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="hello")
    got = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=5)["Messages"]
    assert got[0]["Body"] == "hello"
    sns = client("sns", OPS)
    arn = sns.create_topic(Name=name("topic"))["TopicArn"]
    assert sns.publish(TopicArn=arn, Message="m")["MessageId"]
    events = client("events", OPS)
    assert events.put_events(Entries=[{"Source": "t", "DetailType": "d", "Detail": "{}"}])[
        "FailedEntryCount"] == 0
    client("iot-data", OPS).publish(topic="devices/x", qos=1, payload=b"{}")


@pytest.mark.parametrize("service,call,expected", [
    ("sqs", lambda c: c.list_queues(), "SignatureDoesNotMatch"),
    ("sns", lambda c: c.list_topics(), "SignatureDoesNotMatch"),
    ("events", lambda c: c.list_rules(), "InvalidSignatureException"),
    ("iot-data", lambda c: c.list_retained_messages(), "InvalidSignatureException"),
])
def test_a_wrong_secret_is_refused(service, call, expected):
    c = client(service, (OPS[0], "not-the-secret-0000"))
    with pytest.raises(ClientError) as e:
        call(c)
    assert code(e) == expected
    assert status(e) == 403
    # The answer names no secret.
    assert "ops-secret" not in str(e.value.response)


@pytest.mark.parametrize("service,call,expected", [
    ("sqs", lambda c: c.list_queues(), "InvalidClientTokenId"),
    ("sns", lambda c: c.list_topics(), "InvalidClientTokenId"),
    ("events", lambda c: c.list_rules(), "UnrecognizedClientException"),
])
def test_an_unknown_key_is_refused(service, call, expected):
    c = client(service, ("AKIDNOBODY000001", "whatever-secret-000"))
    with pytest.raises(ClientError) as e:
        call(c)
    assert code(e) == expected


def test_an_unsigned_request_is_refused():
    req = urllib.request.Request(
        ENDPOINT + "/?Action=ListQueues&Version=2012-11-05", method="GET")
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=10)
    assert e.value.code == 403
    body = e.value.read().decode()
    assert "<Code>MissingAuthenticationToken</Code>" in body
    assert e.value.headers.get("x-amzn-RequestId")


def presigned(expires, key=OPS):
    request = AWSRequest(method="GET", url=ENDPOINT + "/?Action=ListQueues&Version=2012-11-05")
    SigV4QueryAuth(Credentials(*key), "sqs", "us-east-1", expires=expires).add_auth(request)
    return request.url


def test_presigned_urls_work_until_they_expire():
    url = presigned(60)
    with urllib.request.urlopen(url, timeout=10) as r:
        assert r.status == 200
        assert b"ListQueuesResponse" in r.read()
    # Altered after signing: refused.
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(url.replace("ListQueues", "ListQueuez"), timeout=10)
    assert b"SignatureDoesNotMatch" in e.value.read()
    # Valid for one second: refused once it has passed.
    short = presigned(1)
    deadline = time.time() + 10
    while True:
        try:
            urllib.request.urlopen(short, timeout=10).read()
        except urllib.error.HTTPError as e:
            assert e.code == 400
            assert b"RequestExpired" in e.read()
            break
        assert time.time() < deadline, "the presigned URL never expired"
        time.sleep(0.2)


def test_the_acl_limits_a_key_to_its_resources():
    ops = client("sqs", OPS)
    public = ops.create_queue(QueueName=name("public"))["QueueUrl"]
    private = ops.create_queue(QueueName=name("private"))["QueueUrl"]
    guest = client("sqs", GUEST)
    guest.send_message(QueueUrl=public, MessageBody="from guest")
    with pytest.raises(ClientError) as e:
        guest.send_message(QueueUrl=private, MessageBody="nope")
    assert code(e) == "AccessDenied"
    assert status(e) == 403
    assert "guest" in e.value.response["Error"]["Message"]
    # An explicit deny wins over an allow.
    with pytest.raises(ClientError) as e:
        guest.receive_message(QueueUrl=public)
    assert code(e) == "AccessDenied"
    # Not granted: denied.
    with pytest.raises(ClientError) as e:
        guest.create_queue(QueueName=name("public"))
    assert code(e) == "AccessDenied"
    with pytest.raises(ClientError) as e:
        guest.list_queues()
    assert code(e) == "AccessDenied"
    # Other protocols: their own denial codes.
    with pytest.raises(ClientError) as e:
        client("sns", GUEST).create_topic(Name=name("t"))
    assert code(e) == "AuthorizationError"
    with pytest.raises(ClientError) as e:
        client("events", GUEST).put_events(
            Entries=[{"Source": "t", "DetailType": "d", "Detail": "{}"}])
    assert code(e) == "AccessDeniedException"
    with pytest.raises(ClientError) as e:
        client("iot-data", GUEST).publish(topic="a/b", qos=0, payload=b"x")
    assert code(e) == "ForbiddenException"
    assert ops.receive_message(QueueUrl=public, WaitTimeSeconds=5)["Messages"][0]["Body"] == \
        "from guest"


def test_add_permission_grants_another_account():
    ops = client("sqs", OPS)
    url = ops.create_queue(QueueName=name("shared"))["QueueUrl"]
    partner = client("sqs", PARTNER)
    with pytest.raises(ClientError) as e:
        partner.send_message(QueueUrl=url, MessageBody="before")
    assert code(e) == "AccessDenied"
    ops.add_permission(QueueUrl=url, Label="partner-send", AWSAccountIds=["111122223333"],
                       Actions=["SendMessage"])
    partner.send_message(QueueUrl=url, MessageBody="after")
    with pytest.raises(ClientError) as e:
        partner.receive_message(QueueUrl=url)
    assert code(e) == "AccessDenied"
    ops.remove_permission(QueueUrl=url, Label="partner-send")
    with pytest.raises(ClientError) as e:
        partner.send_message(QueueUrl=url, MessageBody="revoked")
    assert code(e) == "AccessDenied"


def paho_connect(protocol, username, password):
    """The CONNACK reason paho reports (0 is success)."""
    result = queue.Queue()
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=name("paho"), protocol=protocol)
    c.on_connect = lambda c, u, flags, rc, props: result.put(rc)
    if username is not None:
        c.username_pw_set(username, password)
    c.connect("127.0.0.1", MQTT_PORT)
    c.loop_start()
    try:
        return result.get(timeout=10)
    finally:
        c.loop_stop()
        c.disconnect()


@pytest.mark.parametrize("protocol", [mqtt.MQTTv311, mqtt.MQTTv5])
def test_paho_logins(protocol):
    assert paho_connect(protocol, "alice", "alice-secret") == 0
    rc = paho_connect(protocol, "alice", "wrong")
    assert rc.is_failure and "bad user name or password" in str(rc).lower()
    rc = paho_connect(protocol, None, None)
    assert rc.is_failure and "not authori" in str(rc).lower()


def test_links_in_sns_messages_work_without_credentials():
    """An HTTP endpoint confirms by GETting its SubscribeURL, unsigned, as with SNS: the token is
    the secret. A made-up token is refused by SNS's own rules, not for lack of a signature."""
    sns = client("sns", OPS)
    arn = sns.create_topic(Name=name("links"))["TopicArn"]
    url = (ENDPOINT + "/?Action=ConfirmSubscription&TopicArn=" + urllib.parse.quote(arn, safe="")
           + "&Token=not-a-real-token")
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(url, timeout=10)
    body = e.value.read().decode()
    assert "MissingAuthenticationToken" not in body
    assert "<Code>" in body
    # Any other unsigned call still needs credentials.
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(ENDPOINT + "/?Action=ListTopics", timeout=10)
    assert e.value.code == 403
