"""The SNS API of a running Outpost, driven by boto3 exactly as an application would drive AWS.

Run by tests/sns.rs with OUTPOST_SNS_ENDPOINT (the HTTP port) and OUTPOST_MQTT_PORT set. HTTP
subscriptions go to a real HTTP server run here, which confirms its subscription and verifies
every signature with the certificate the broker serves at SigningCertURL, as a receiver of AWS
SNS messages does. MQTT subscriptions are received with paho.
"""

import base64
import http.server
import json
import os
import queue
import threading
import time
import urllib.parse
import urllib.request

import boto3
import paho.mqtt.client as mqtt
import pytest
from botocore.exceptions import ClientError
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from conftest import CREDENTIALS, code, eventually, name

ENDPOINT = os.environ["OUTPOST_SNS_ENDPOINT"]
MQTT_PORT = int(os.environ["OUTPOST_MQTT_PORT"])
KW = dict(endpoint_url=ENDPOINT, **CREDENTIALS)


@pytest.fixture(scope="module")
def sns():
    return boto3.client("sns", **KW)


@pytest.fixture(scope="module")
def sqs():
    return boto3.client("sqs", **KW)


def new_queue(sqs, fifo=False, attributes=None):
    attributes = dict(attributes or {})
    qname = name("q") + (".fifo" if fifo else "")
    if fifo:
        attributes["FifoQueue"] = "true"
    url = sqs.create_queue(QueueName=qname, Attributes=attributes)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return url, arn


def drain(sqs, url, want, timeout=15.0):
    """Receives and deletes until `want` messages arrived; returns them (and checks no more come)."""
    got = []
    deadline = time.monotonic() + timeout
    while len(got) < want:
        assert time.monotonic() < deadline, f"only {len(got)} of {want} messages arrived"
        resp = sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1, MessageAttributeNames=["All"]
        )
        for m in resp.get("Messages", []):
            got.append(m)
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    extra = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages", [])
    assert not extra, f"unexpected extra messages: {extra}"
    return got


_certs = {}


def verify(envelope):
    """Verifies an SNS message's signature the way AWS documents it."""
    url = envelope["SigningCertURL"]
    if url not in _certs:
        pem = urllib.request.urlopen(url, timeout=10).read()
        _certs[url] = x509.load_pem_x509_certificate(pem).public_key()
    key = _certs[url]
    if envelope["Type"] == "Notification":
        fields = ["Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"]
    else:
        fields = ["Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"]
    text = "".join(f"{k}\n{envelope[k]}\n" for k in fields if k in envelope)
    algo = hashes.SHA1() if envelope["SignatureVersion"] == "1" else hashes.SHA256()
    key.verify(base64.b64decode(envelope["Signature"]), text.encode(), padding.PKCS1v15(), algo)


class Endpoint:
    """A real HTTP endpoint: records every POST, confirms subscriptions by GETting their
    SubscribeURL, and fails the first `fail_first` notifications (or all with `fail_always`)."""

    def __init__(self, fail_first=0, fail_always=False, status=500):
        self.posts = queue.Queue()
        self.notifications = []
        self.attempts = 0
        self.fail_first = fail_first
        self.fail_always = fail_always
        self.status = status
        self.lock = threading.Lock()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
                kind = self.headers.get("x-amz-sns-message-type")
                status = 200
                if kind == "Notification":
                    with outer.lock:
                        outer.attempts += 1
                        if outer.fail_always or outer.attempts <= outer.fail_first:
                            status = outer.status
                        else:
                            outer.notifications.append((time.monotonic(), dict(self.headers), body))
                outer.posts.put((kind, dict(self.headers), body))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/sns"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def confirm(self, via_api=None, topic_arn=None):
        kind, headers, body = self.posts.get(timeout=15)
        assert kind == "SubscriptionConfirmation", kind
        env = json.loads(body)
        verify(env)
        assert headers["x-amz-sns-topic-arn"] == env["TopicArn"]
        if via_api is not None:
            return via_api.confirm_subscription(TopicArn=topic_arn, Token=env["Token"])["SubscriptionArn"]
        xml = urllib.request.urlopen(env["SubscribeURL"], timeout=10).read().decode()
        assert "<SubscriptionArn>" in xml, xml
        return xml.split("<SubscriptionArn>")[1].split("</SubscriptionArn>")[0]

    def close(self):
        self.server.shutdown()


class MqttSubscriber:
    def __init__(self, topic):
        self.messages = queue.Queue()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=name("sub"), protocol=mqtt.MQTTv5)
        subscribed = threading.Event()
        self.client.on_message = lambda c, u, m: self.messages.put(m)
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.connect("127.0.0.1", MQTT_PORT)
        self.client.loop_start()
        self.client.subscribe(topic, qos=1)
        assert subscribed.wait(10), "SUBACK"

    def get(self, timeout=10):
        return self.messages.get(timeout=timeout)

    def close(self):
        self.client.loop_stop()
        self.client.disconnect()


# ---------------------------------------------------------------- topics


def test_topic_lifecycle(sns):
    n = name()
    arn = sns.create_topic(Name=n, Attributes={"DisplayName": "Alerts"}, Tags=[{"Key": "team", "Value": "ops"}])[
        "TopicArn"
    ]
    assert arn == f"arn:aws:sns:us-east-1:000000000000:{n}"
    # Idempotent with equal attributes; an error with different ones.
    assert sns.create_topic(Name=n, Attributes={"DisplayName": "Alerts"})["TopicArn"] == arn
    with pytest.raises(ClientError) as e:
        sns.create_topic(Name=n, Attributes={"DisplayName": "Other"})
    assert code(e) == "InvalidParameter"
    a = sns.get_topic_attributes(TopicArn=arn)["Attributes"]
    assert a["TopicArn"] == arn and a["Owner"] == "000000000000" and a["DisplayName"] == "Alerts"
    assert a["SubscriptionsConfirmed"] == "0" and a["SubscriptionsPending"] == "0"
    assert a["SubscriptionsDeleted"] == "0"
    assert json.loads(a["Policy"])["Statement"][0]["Resource"] == arn
    assert "defaultHealthyRetryPolicy" in json.loads(a["EffectiveDeliveryPolicy"])["http"]
    sns.set_topic_attributes(TopicArn=arn, AttributeName="DisplayName", AttributeValue="Renamed")
    policy = {"http": {"defaultHealthyRetryPolicy": {"minDelayTarget": 2, "maxDelayTarget": 5, "numRetries": 4}}}
    sns.set_topic_attributes(TopicArn=arn, AttributeName="DeliveryPolicy", AttributeValue=json.dumps(policy))
    a = sns.get_topic_attributes(TopicArn=arn)["Attributes"]
    assert a["DisplayName"] == "Renamed"
    assert json.loads(a["EffectiveDeliveryPolicy"])["http"]["defaultHealthyRetryPolicy"]["numRetries"] == 4
    with pytest.raises(ClientError) as e:
        sns.set_topic_attributes(TopicArn=arn, AttributeName="Bogus", AttributeValue="x")
    assert code(e) == "InvalidParameter"
    with pytest.raises(ClientError) as e:
        sns.set_topic_attributes(
            TopicArn=arn, AttributeName="DeliveryPolicy", AttributeValue='{"http":{"defaultHealthyRetryPolicy":{"numRetries":500}}}'
        )
    assert code(e) == "InvalidParameter"
    sns.delete_topic(TopicArn=arn)
    sns.delete_topic(TopicArn=arn)  # deleting what is gone is not an error, as in SNS
    with pytest.raises(ClientError) as e:
        sns.get_topic_attributes(TopicArn=arn)
    assert code(e) == "NotFound"
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_list_topics_pages(sns):
    prefix = name("page")
    arns = {sns.create_topic(Name=f"{prefix}-{i:03}")["TopicArn"] for i in range(105)}
    seen, token, pages = [], None, 0
    while True:
        resp = sns.list_topics(**({"NextToken": token} if token else {}))
        pages += 1
        assert len(resp["Topics"]) <= 100
        seen += [t["TopicArn"] for t in resp["Topics"]]
        token = resp.get("NextToken")
        if not token:
            break
    assert pages >= 2
    assert arns <= set(seen) and len(seen) == len(set(seen))
    paginated = [t["TopicArn"] for p in sns.get_paginator("list_topics").paginate() for t in p["Topics"]]
    assert arns <= set(paginated)
    for a in arns:
        sns.delete_topic(TopicArn=a)


def test_invalid_names_and_arns(sns):
    for bad in ["", "has space", "x" * 257, "dot.fifo"]:
        with pytest.raises(ClientError) as e:
            sns.create_topic(Name=bad)
        assert code(e) == "InvalidParameter", bad
    with pytest.raises(ClientError) as e:
        sns.create_topic(Name=name() + ".fifo")  # FIFO name without FifoTopic
    assert code(e) == "InvalidParameter"
    with pytest.raises(ClientError) as e:
        sns.get_topic_attributes(TopicArn="not-an-arn")
    assert code(e) == "InvalidParameter"
    with pytest.raises(ClientError) as e:
        sns.publish(TopicArn="arn:aws:sns:us-east-1:000000000000:missing-topic", Message="x")
    assert code(e) == "NotFound"


def test_tags_and_permissions(sns):
    arn = sns.create_topic(Name=name())["TopicArn"]
    sns.tag_resource(ResourceArn=arn, Tags=[{"Key": "a", "Value": "1"}, {"Key": "b", "Value": "2"}])
    sns.untag_resource(ResourceArn=arn, TagKeys=["a"])
    assert sns.list_tags_for_resource(ResourceArn=arn)["Tags"] == [{"Key": "b", "Value": "2"}]
    with pytest.raises(ClientError) as e:
        sns.tag_resource(ResourceArn=arn, Tags=[{"Key": f"k{i}", "Value": "v"} for i in range(51)])
    assert code(e) == "TagLimitExceeded"
    with pytest.raises(ClientError) as e:
        sns.list_tags_for_resource(ResourceArn=arn + "-gone")
    assert code(e) == "ResourceNotFound"
    sns.add_permission(TopicArn=arn, Label="pub", AWSAccountId=["111122223333"], ActionName=["Publish"])
    statements = json.loads(sns.get_topic_attributes(TopicArn=arn)["Attributes"]["Policy"])["Statement"]
    assert [s for s in statements if s["Sid"] == "pub"][0]["Action"] == ["SNS:Publish"]
    with pytest.raises(ClientError) as e:
        sns.add_permission(TopicArn=arn, Label="pub", AWSAccountId=["111122223333"], ActionName=["Publish"])
    assert code(e) == "InvalidParameter"
    sns.remove_permission(TopicArn=arn, Label="pub")
    statements = json.loads(sns.get_topic_attributes(TopicArn=arn)["Attributes"]["Policy"])["Statement"]
    assert not [s for s in statements if s["Sid"] == "pub"]
    sns.delete_topic(TopicArn=arn)


# ---------------------------------------------------------------- subscriptions


def test_subscriptions(sns, sqs):
    arn = sns.create_topic(Name=name())["TopicArn"]
    _, qarn = new_queue(sqs)
    sub = sns.subscribe(TopicArn=arn, Protocol="sqs", Endpoint=qarn, Attributes={"RawMessageDelivery": "true"})[
        "SubscriptionArn"
    ]
    assert sub.startswith(arn + ":")
    # Subscribing again is idempotent.
    assert sns.subscribe(TopicArn=arn, Protocol="sqs", Endpoint=qarn, Attributes={"RawMessageDelivery": "true"})[
        "SubscriptionArn"
    ] == sub
    a = sns.get_subscription_attributes(SubscriptionArn=sub)["Attributes"]
    assert a["Protocol"] == "sqs" and a["Endpoint"] == qarn and a["RawMessageDelivery"] == "true"
    assert a["PendingConfirmation"] == "false" and a["TopicArn"] == arn
    sns.set_subscription_attributes(
        SubscriptionArn=sub, AttributeName="FilterPolicy", AttributeValue=json.dumps({"k": ["v"]})
    )
    assert json.loads(sns.get_subscription_attributes(SubscriptionArn=sub)["Attributes"]["FilterPolicy"]) == {
        "k": ["v"]
    }
    with pytest.raises(ClientError) as e:
        sns.set_subscription_attributes(SubscriptionArn=sub, AttributeName="FilterPolicy", AttributeValue='{"k": "v"}')
    assert code(e) == "InvalidParameter"
    with pytest.raises(ClientError) as e:
        sns.set_subscription_attributes(
            SubscriptionArn=sub,
            AttributeName="FilterPolicy",
            AttributeValue=json.dumps({f"k{i}": ["v"] for i in range(6)}),
        )
    assert code(e) == "InvalidParameter"
    with pytest.raises(ClientError) as e:
        sns.subscribe(TopicArn=arn, Protocol="carrier-pigeon", Endpoint="x")
    assert code(e) == "InvalidParameter"
    with pytest.raises(ClientError) as e:
        sns.subscribe(TopicArn=arn, Protocol="sqs", Endpoint="not-an-arn")
    assert code(e) == "InvalidParameter"
    with pytest.raises(ClientError) as e:
        sns.subscribe(TopicArn=arn, Protocol="http", Endpoint="ftp://x")
    assert code(e) == "InvalidParameter"
    listed = sns.list_subscriptions_by_topic(TopicArn=arn)["Subscriptions"]
    assert [s["SubscriptionArn"] for s in listed] == [sub]
    assert sub in [s["SubscriptionArn"] for p in sns.get_paginator("list_subscriptions").paginate() for s in p["Subscriptions"]]
    sns.unsubscribe(SubscriptionArn=sub)
    with pytest.raises(ClientError) as e:
        sns.get_subscription_attributes(SubscriptionArn=sub)
    assert code(e) == "NotFound"
    assert sns.get_topic_attributes(TopicArn=arn)["Attributes"]["SubscriptionsDeleted"] == "1"
    sns.delete_topic(TopicArn=arn)


def test_list_subscriptions_pages(sns):
    arn = sns.create_topic(Name=name())["TopicArn"]
    subs = {
        sns.subscribe(TopicArn=arn, Protocol="mqtt", Endpoint=f"pages/{i}")["SubscriptionArn"] for i in range(120)
    }
    by_topic = [
        s["SubscriptionArn"]
        for p in sns.get_paginator("list_subscriptions_by_topic").paginate(TopicArn=arn)
        for s in p["Subscriptions"]
    ]
    assert sorted(by_topic) == sorted(subs)
    first = sns.list_subscriptions_by_topic(TopicArn=arn)
    assert len(first["Subscriptions"]) == 100 and first["NextToken"]
    everything = [
        s["SubscriptionArn"] for p in sns.get_paginator("list_subscriptions").paginate() for s in p["Subscriptions"]
    ]
    assert subs <= set(everything)
    sns.delete_topic(TopicArn=arn)
    assert not subs & {
        s["SubscriptionArn"] for p in sns.get_paginator("list_subscriptions").paginate() for s in p["Subscriptions"]
    }


# ---------------------------------------------------------------- publish and fan-out


def test_fan_out_to_queues_http_and_mqtt(sns, sqs):
    arn = sns.create_topic(Name=name())["TopicArn"]
    queues = [new_queue(sqs) for _ in range(3)]
    for i, (_, qarn) in enumerate(queues):
        sns.subscribe(
            TopicArn=arn, Protocol="sqs", Endpoint=qarn, Attributes={"RawMessageDelivery": "true" if i == 2 else "false"}
        )
    endpoint = Endpoint()
    pending = sns.subscribe(TopicArn=arn, Protocol="http", Endpoint=endpoint.url)["SubscriptionArn"]
    assert pending == "pending confirmation"
    assert sns.get_topic_attributes(TopicArn=arn)["Attributes"]["SubscriptionsPending"] == "1"
    http_sub = endpoint.confirm()
    assert http_sub.startswith(arn)
    assert sns.get_topic_attributes(TopicArn=arn)["Attributes"]["SubscriptionsConfirmed"] == "4"
    device = MqttSubscriber("devices/alerts")
    sns.subscribe(TopicArn=arn, Protocol="mqtt", Endpoint="devices/alerts")

    attrs = {
        "site": {"DataType": "String", "StringValue": "north"},
        "level": {"DataType": "Number", "StringValue": "7"},
        "blob": {"DataType": "Binary", "BinaryValue": b"\x00\x01"},
        "tags": {"DataType": "String.Array", "StringValue": '["a","b"]'},
    }
    mid = sns.publish(TopicArn=arn, Message="hello <world> & \"all\"", Subject="Alert", MessageAttributes=attrs)[
        "MessageId"
    ]
    for url, _ in queues[:2]:
        (m,) = drain(sqs, url, 1)
        env = json.loads(m["Body"])
        assert env["Type"] == "Notification" and env["MessageId"] == mid and env["TopicArn"] == arn
        assert env["Message"] == "hello <world> & \"all\"" and env["Subject"] == "Alert"
        assert env["MessageAttributes"]["site"] == {"Type": "String", "Value": "north"}
        assert env["MessageAttributes"]["blob"] == {"Type": "Binary", "Value": "AAE="}
        assert env["UnsubscribeURL"].startswith(ENDPOINT)
        verify(env)
    (raw,) = drain(sqs, queues[2][0], 1)
    assert raw["Body"] == "hello <world> & \"all\""
    assert raw["MessageAttributes"]["site"]["StringValue"] == "north"
    assert raw["MessageAttributes"]["blob"]["BinaryValue"] == b"\x00\x01"

    eventually("the HTTP notification", lambda: endpoint.notifications)
    _, headers, body = endpoint.notifications[0]
    env = json.loads(body)
    assert headers["x-amz-sns-message-type"] == "Notification"
    assert headers["x-amz-sns-message-id"] == mid
    assert headers["x-amz-sns-topic-arn"] == arn
    assert headers["x-amz-sns-subscription-arn"] == http_sub
    assert env["Message"] == "hello <world> & \"all\""
    verify(env)

    got = device.get()
    assert got.topic == "devices/alerts"
    env = json.loads(got.payload)
    assert env["MessageId"] == mid
    verify(env)
    device.close()

    # Unsubscribing over the UnsubscribeURL, as a receiver of AWS messages can.
    xml = urllib.request.urlopen(env["UnsubscribeURL"], timeout=10).read().decode()
    assert "UnsubscribeResponse" in xml
    sns.delete_topic(TopicArn=arn)
    endpoint.close()


def test_confirm_over_the_api_and_signature_version_2(sns):
    arn = sns.create_topic(Name=name(), Attributes={"SignatureVersion": "2"})["TopicArn"]
    endpoint = Endpoint()
    sub = sns.subscribe(TopicArn=arn, Protocol="http", Endpoint=endpoint.url, ReturnSubscriptionArn=True)[
        "SubscriptionArn"
    ]
    assert sub.startswith(arn)
    assert endpoint.confirm(via_api=sns, topic_arn=arn) == sub
    with pytest.raises(ClientError) as e:
        sns.confirm_subscription(TopicArn=arn, Token="not-a-token")
    assert code(e) == "InvalidParameter"
    sns.publish(TopicArn=arn, Message="v2")
    eventually("the notification", lambda: endpoint.notifications)
    env = json.loads(endpoint.notifications[0][2])
    assert env["SignatureVersion"] == "2"
    verify(env)
    sns.delete_topic(TopicArn=arn)
    endpoint.close()


def test_filter_policies(sns, sqs):
    arn = sns.create_topic(Name=name())["TopicArn"]
    by_attr, qa = new_queue(sqs)
    by_body, qb = new_queue(sqs)
    sns.subscribe(
        TopicArn=arn,
        Protocol="sqs",
        Endpoint=qa,
        Attributes={
            "RawMessageDelivery": "true",
            "FilterPolicy": json.dumps(
                {"site": [{"prefix": "nor"}], "level": [{"numeric": [">=", 5]}], "env": [{"anything-but": "test"}]}
            ),
        },
    )
    sns.subscribe(
        TopicArn=arn,
        Protocol="sqs",
        Endpoint=qb,
        Attributes={
            "RawMessageDelivery": "true",
            "FilterPolicyScope": "MessageBody",
            "FilterPolicy": json.dumps({"reading": {"temp": [{"numeric": [">", 50]}]}}),
        },
    )

    def pub(body, **a):
        attrs = {
            k: {"DataType": "Number" if isinstance(v, int) else "String", "StringValue": str(v)} for k, v in a.items()
        }
        sns.publish(TopicArn=arn, Message=body, MessageAttributes=attrs)

    pub("a1", site="north", level=7, env="prod")  # attr: match
    pub("a2", site="south", level=7, env="prod")  # prefix fails
    pub("a3", site="north", level=3, env="prod")  # numeric fails
    pub("a4", site="north", level=9, env="test")  # anything-but fails
    pub(json.dumps({"reading": {"temp": 70}}))  # body: match
    pub(json.dumps({"reading": {"temp": 20}}))  # body: no
    pub("not json")  # body: no
    assert [m["Body"] for m in drain(sqs, by_attr, 1)] == ["a1"]
    assert [json.loads(m["Body"])["reading"]["temp"] for m in drain(sqs, by_body, 1)] == [70]
    sns.delete_topic(TopicArn=arn)


def test_message_structure_json(sns, sqs):
    arn = sns.create_topic(Name=name())["TopicArn"]
    url, qarn = new_queue(sqs)
    sns.subscribe(TopicArn=arn, Protocol="sqs", Endpoint=qarn, Attributes={"RawMessageDelivery": "true"})
    sns.publish(TopicArn=arn, MessageStructure="json", Message=json.dumps({"default": "d", "sqs": "for queues"}))
    assert [m["Body"] for m in drain(sqs, url, 1)] == ["for queues"]
    for bad in ["not json", json.dumps({"sqs": "no default"})]:
        with pytest.raises(ClientError) as e:
            sns.publish(TopicArn=arn, MessageStructure="json", Message=bad)
        assert code(e) == "InvalidParameter"
    sns.delete_topic(TopicArn=arn)


def test_publish_limits_and_attribute_errors(sns):
    arn = sns.create_topic(Name=name())["TopicArn"]
    sns.publish(TopicArn=arn, Message="x" * 262_144)
    with pytest.raises(ClientError) as e:
        sns.publish(TopicArn=arn, Message="x" * 262_145)
    assert code(e) == "InvalidParameter"
    with pytest.raises(ClientError) as e:  # body + attributes over the limit
        sns.publish(
            TopicArn=arn,
            Message="x" * 262_000,
            MessageAttributes={"a": {"DataType": "String", "StringValue": "y" * 1000}},
        )
    assert code(e) == "InvalidParameter"
    with pytest.raises(ClientError) as e:
        sns.publish(TopicArn=arn, Message="x", MessageAttributes={"n": {"DataType": "Number", "StringValue": "abc"}})
    assert code(e) == "ParameterValueInvalid"
    with pytest.raises(ClientError) as e:
        sns.publish(TopicArn=arn, Message="x", MessageAttributes={"n": {"DataType": "Blob", "StringValue": "abc"}})
    assert code(e) == "ParameterValueInvalid"
    with pytest.raises(ClientError) as e:
        sns.publish(TopicArn=arn, Message="")
    assert code(e) == "InvalidParameter"
    with pytest.raises(ClientError) as e:
        sns.publish(TopicArn=arn, Message="x", Subject="line\nbreak")
    assert code(e) == "InvalidParameter"
    sns.publish(TopicArn=arn, Message="x", Subject="s" * 100)
    with pytest.raises(ClientError) as e:
        sns.publish(TopicArn=arn, Message="x", Subject="s" * 101)
    assert code(e) == "InvalidParameter"
    with pytest.raises(ClientError) as e:
        sns.publish(TopicArn=arn, Message="x", MessageGroupId="g")  # not a FIFO topic
    assert code(e) == "InvalidParameter"
    sns.delete_topic(TopicArn=arn)


def test_publish_batch(sns, sqs):
    arn = sns.create_topic(Name=name())["TopicArn"]
    url, qarn = new_queue(sqs)
    sns.subscribe(TopicArn=arn, Protocol="sqs", Endpoint=qarn, Attributes={"RawMessageDelivery": "true"})
    resp = sns.publish_batch(
        TopicArn=arn,
        PublishBatchRequestEntries=[{"Id": f"e{i}", "Message": f"m{i}"} for i in range(9)]
        + [{"Id": "bad", "Message": "x", "MessageAttributes": {"n": {"DataType": "Number", "StringValue": "x"}}}],
    )
    assert sorted(s["Id"] for s in resp["Successful"]) == sorted(f"e{i}" for i in range(9))
    assert [(f["Id"], f["Code"], f["SenderFault"]) for f in resp["Failed"]] == [("bad", "ParameterValueInvalid", True)]
    assert sorted(m["Body"] for m in drain(sqs, url, 9)) == sorted(f"m{i}" for i in range(9))
    cases = [
        ([{"Id": f"e{i}", "Message": "x"} for i in range(11)], "TooManyEntriesInBatchRequest"),
        ([{"Id": "same", "Message": "x"}, {"Id": "same", "Message": "y"}], "BatchEntryIdsNotDistinct"),
        ([{"Id": "bad id!", "Message": "x"}], "InvalidBatchEntryId"),
        ([{"Id": "a", "Message": "x" * 200_000}, {"Id": "b", "Message": "x" * 100_000}], "BatchRequestTooLong"),
    ]
    for entries, want in cases:
        with pytest.raises(ClientError) as e:
            sns.publish_batch(TopicArn=arn, PublishBatchRequestEntries=entries)
        assert code(e) == want
    sns.delete_topic(TopicArn=arn)


def test_fifo_topic_into_fifo_queue_in_order(sns, sqs):
    arn = sns.create_topic(
        Name=name() + ".fifo", Attributes={"FifoTopic": "true", "ContentBasedDeduplication": "false"}
    )["TopicArn"]
    url, qarn = new_queue(sqs, fifo=True)
    sns.subscribe(TopicArn=arn, Protocol="sqs", Endpoint=qarn, Attributes={"RawMessageDelivery": "true"})
    with pytest.raises(ClientError) as e:
        sns.subscribe(TopicArn=arn, Protocol="sqs", Endpoint=new_queue(sqs)[1])
    assert code(e) == "InvalidParameter"
    with pytest.raises(ClientError) as e:
        sns.subscribe(TopicArn=arn, Protocol="http", Endpoint="http://127.0.0.1:1/x")
    assert code(e) == "InvalidParameter"
    with pytest.raises(ClientError) as e:
        sns.publish(TopicArn=arn, Message="x", MessageDeduplicationId="d")  # no group
    assert code(e) == "InvalidParameter"
    with pytest.raises(ClientError) as e:
        sns.publish(TopicArn=arn, Message="x", MessageGroupId="g")  # no dedup id
    assert code(e) == "InvalidParameter"
    seqs = []
    for i in range(20):
        r = sns.publish(TopicArn=arn, Message=f"m{i}", MessageGroupId=f"g{i % 2}", MessageDeduplicationId=f"d{i}")
        seqs.append(int(r["SequenceNumber"]))
    assert seqs == sorted(seqs) and len(set(seqs)) == 20
    # A duplicate within the window: the same id, no second copy.
    again = sns.publish(TopicArn=arn, Message="m0", MessageGroupId="g0", MessageDeduplicationId="d0")
    assert int(again["SequenceNumber"]) == seqs[0]
    bodies = []
    deadline = time.monotonic() + 15
    while len(bodies) < 20 and time.monotonic() < deadline:
        for m in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", []):
            bodies.append(m["Body"])
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    assert sorted(bodies, key=lambda b: int(b[1:])) == [f"m{i}" for i in range(20)]
    for g in (0, 1):
        in_group = [int(b[1:]) for b in bodies if int(b[1:]) % 2 == g]
        assert in_group == sorted(in_group), "order within a message group"
    # Content-based deduplication.
    sns.set_topic_attributes(TopicArn=arn, AttributeName="ContentBasedDeduplication", AttributeValue="true")
    a = sns.publish(TopicArn=arn, Message="same body", MessageGroupId="g")
    b = sns.publish(TopicArn=arn, Message="same body", MessageGroupId="g")
    assert a["MessageId"] == b["MessageId"]
    assert [m["Body"] for m in drain(sqs, url, 1)] == ["same body"]
    sns.delete_topic(TopicArn=arn)


# ---------------------------------------------------------------- retries and dead letters


def test_retries_then_delivery_and_dead_letter_without_delaying_others(sns, sqs):
    arn = sns.create_topic(Name=name())["TopicArn"]
    fast_policy = json.dumps(
        {"healthyRetryPolicy": {"minDelayTarget": 1, "maxDelayTarget": 1, "numRetries": 3, "backoffFunction": "linear"}}
    )
    flaky = Endpoint(fail_first=2)
    dead = Endpoint(fail_always=True)
    healthy = Endpoint()
    dlq_url, dlq_arn = new_queue(sqs)
    for ep in (flaky, dead, healthy):
        attrs = {"DeliveryPolicy": fast_policy}
        if ep is dead:
            attrs["RedrivePolicy"] = json.dumps({"deadLetterTargetArn": dlq_arn})
        sns.subscribe(TopicArn=arn, Protocol="http", Endpoint=ep.url, Attributes=attrs)
        ep.confirm()
    refused = Endpoint(fail_always=True, status=403)
    sns.subscribe(
        TopicArn=arn,
        Protocol="http",
        Endpoint=refused.url,
        Attributes={"DeliveryPolicy": fast_policy, "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn})},
    )
    refused.confirm()

    started = time.monotonic()
    mid = sns.publish(TopicArn=arn, Message="retry me")["MessageId"]
    assert time.monotonic() - started < 2, "the publisher does not wait for endpoints"
    eventually("the healthy endpoint", lambda: healthy.notifications)
    assert healthy.notifications[0][0] - started < 2, "a failing endpoint must not delay a healthy one"
    eventually("the flaky endpoint's third attempt", lambda: flaky.notifications, timeout=20)
    assert flaky.attempts == 3
    assert flaky.notifications[0][0] - started >= 1.8, "two retries 1 s apart"
    # The dead endpoint: 1 attempt + 3 retries, then the dead-letter queue. The 403 one goes
    # there at once (a client error is not retried).
    letters = drain(sqs, dlq_url, 2, timeout=20)
    assert dead.attempts == 4 and refused.attempts == 1
    for m in letters:
        env = json.loads(m["Body"])
        assert env["MessageId"] == mid and env["Message"] == "retry me"
    sns.delete_topic(TopicArn=arn)
    for ep in (flaky, dead, healthy, refused):
        ep.close()


def test_throttle_policy_spaces_deliveries(sns):
    arn = sns.create_topic(Name=name())["TopicArn"]
    endpoint = Endpoint()
    policy = {"throttlePolicy": {"maxReceivesPerSecond": 2}}
    sns.subscribe(TopicArn=arn, Protocol="http", Endpoint=endpoint.url, Attributes={"DeliveryPolicy": json.dumps(policy)})
    endpoint.confirm()
    for i in range(5):
        sns.publish(TopicArn=arn, Message=f"t{i}")
    eventually("5 notifications", lambda: len(endpoint.notifications) == 5)
    times = sorted(t for t, _, _ in endpoint.notifications)
    assert times[-1] - times[0] >= 1.8, "2 per second: 5 deliveries span at least 2 s"
    sns.delete_topic(TopicArn=arn)
    endpoint.close()


def test_metrics_count_topics(sns):
    topic = name("metered")
    arn = sns.create_topic(Name=topic)["TopicArn"]
    sns.publish(TopicArn=arn, Message="counted")
    text = urllib.request.urlopen(ENDPOINT + "/metrics", timeout=10).read().decode()
    assert "# TYPE outpost_topic_published counter" in text
    published = [l for l in text.splitlines()
                 if l.startswith('outpost_messages_received_total{protocol="sns"}')]
    assert published and int(published[0].split()[1]) > 0
    assert f'outpost_topic_published_total{{topic="{topic}"}} 1' in text.splitlines()


def test_sqs_client_still_works_beside_sns(sqs):
    url, _ = new_queue(sqs)
    sqs.send_message(QueueUrl=url, MessageBody="plain")
    assert [m["Body"] for m in drain(sqs, url, 1)] == ["plain"]
