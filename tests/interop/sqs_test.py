"""The SQS API of a running Outpost, driven by boto3 exactly as an application would drive AWS.

Run by tests/sqs.rs with OUTPOST_SQS_ENDPOINT set, once with a current boto3 (AWS JSON 1.0
protocol) and once with boto3 1.26 (the query protocol with XML responses). boto3 itself checks
every MD5 digest Outpost returns.
"""

import json
import os
import threading
import time
import urllib.request

import boto3
import pytest
from botocore.exceptions import ClientError
from conftest import code, eventually, name

ENDPOINT = os.environ["OUTPOST_SQS_ENDPOINT"]


@pytest.fixture(scope="module")
def sqs():
    return boto3.client(
        "sqs",
        endpoint_url=ENDPOINT,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )


def protocol(sqs):
    return sqs.meta.service_model.protocol


def attrs(sqs, url):
    return sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]


def receive(sqs, url, **kw):
    kw.setdefault("WaitTimeSeconds", 0)
    return sqs.receive_message(QueueUrl=url, **kw).get("Messages", [])


# --- queues -------------------------------------------------------------------------------------


def test_create_get_list_delete(sqs):
    prefix = name("list")
    urls = [sqs.create_queue(QueueName=f"{prefix}-{i}")["QueueUrl"] for i in range(3)]
    assert urls[0].endswith(f"/000000000000/{prefix}-0")
    assert sqs.get_queue_url(QueueName=f"{prefix}-1")["QueueUrl"] == urls[1]
    listed = sqs.list_queues(QueueNamePrefix=prefix)["QueueUrls"]
    assert listed == urls
    page = sqs.list_queues(QueueNamePrefix=prefix, MaxResults=2)
    assert page["QueueUrls"] == urls[:2]
    rest = sqs.list_queues(QueueNamePrefix=prefix, MaxResults=2, NextToken=page["NextToken"])
    assert rest["QueueUrls"] == urls[2:] and "NextToken" not in rest
    sqs.delete_queue(QueueUrl=urls[0])
    with pytest.raises(ClientError) as e:
        sqs.get_queue_url(QueueName=f"{prefix}-0")
    assert code(e) == "AWS.SimpleQueueService.NonExistentQueue"
    with pytest.raises(ClientError) as e:
        sqs.send_message(QueueUrl=urls[0], MessageBody="x")
    assert code(e) == "AWS.SimpleQueueService.NonExistentQueue"


def test_create_is_idempotent_for_equal_attributes(sqs):
    n = name()
    a = sqs.create_queue(QueueName=n, Attributes={"VisibilityTimeout": "40"})["QueueUrl"]
    b = sqs.create_queue(QueueName=n, Attributes={"VisibilityTimeout": "40"})["QueueUrl"]
    assert a == b
    with pytest.raises(ClientError) as e:
        sqs.create_queue(QueueName=n, Attributes={"VisibilityTimeout": "41"})
    assert code(e) in ("QueueAlreadyExists", "QueueNameExists")


def test_queue_names_and_attributes_are_validated(sqs):
    for bad in ["has space", "x" * 81, "bad.fifo"]:
        with pytest.raises(ClientError) as e:
            sqs.create_queue(QueueName=bad)
        assert code(e) == "InvalidParameterValue"
    with pytest.raises(ClientError) as e:
        sqs.create_queue(QueueName=name(), Attributes={"DelaySeconds": "901"})
    assert code(e) == "InvalidAttributeValue"
    with pytest.raises(ClientError) as e:
        sqs.create_queue(QueueName=name(), Attributes={"Colour": "blue"})
    assert code(e) == "InvalidAttributeName"


def test_attributes_defaults_and_changes(sqs):
    url = sqs.create_queue(QueueName=name())["QueueUrl"]
    a = attrs(sqs, url)
    assert a["VisibilityTimeout"] == "30"
    assert a["MaximumMessageSize"] == "262144"
    assert a["MessageRetentionPeriod"] == "345600"
    assert a["DelaySeconds"] == "0"
    assert a["QueueArn"].startswith("arn:aws:sqs:us-east-1:000000000000:")
    assert int(a["CreatedTimestamp"]) > 1_600_000_000
    sqs.set_queue_attributes(QueueUrl=url, Attributes={"VisibilityTimeout": "5", "DelaySeconds": "2"})
    got = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["VisibilityTimeout", "DelaySeconds"])
    assert got["Attributes"] == {"VisibilityTimeout": "5", "DelaySeconds": "2"}
    with pytest.raises(ClientError) as e:
        sqs.set_queue_attributes(QueueUrl=url, Attributes={"VisibilityTimeout": "43201"})
    assert code(e) == "InvalidAttributeValue"


def test_tags(sqs):
    url = sqs.create_queue(QueueName=name(), tags={"team": "edge"})["QueueUrl"]
    assert sqs.list_queue_tags(QueueUrl=url)["Tags"] == {"team": "edge"}
    sqs.tag_queue(QueueUrl=url, Tags={"env": "test", "team": "core"})
    assert sqs.list_queue_tags(QueueUrl=url)["Tags"] == {"team": "core", "env": "test"}
    sqs.untag_queue(QueueUrl=url, TagKeys=["team"])
    assert sqs.list_queue_tags(QueueUrl=url)["Tags"] == {"env": "test"}


def test_permissions(sqs):
    url = sqs.create_queue(QueueName=name())["QueueUrl"]
    sqs.add_permission(QueueUrl=url, Label="p1", AWSAccountIds=["111122223333"], Actions=["SendMessage"])
    policy = json.loads(attrs(sqs, url)["Policy"])
    assert policy["Statement"][0]["Sid"] == "p1"
    with pytest.raises(ClientError):
        sqs.add_permission(QueueUrl=url, Label="p1", AWSAccountIds=["1"], Actions=["SendMessage"])
    sqs.remove_permission(QueueUrl=url, Label="p1")
    assert "Policy" not in attrs(sqs, url)


# --- messages -----------------------------------------------------------------------------------


def test_send_receive_delete_with_attributes(sqs):
    url = sqs.create_queue(QueueName=name())["QueueUrl"]
    sent = sqs.send_message(
        QueueUrl=url,
        MessageBody="hello ünïcode ✓",
        MessageAttributes={
            "color": {"DataType": "String", "StringValue": "red"},
            "size": {"DataType": "Number", "StringValue": "42"},
            "blob": {"DataType": "Binary", "BinaryValue": b"\x00\x01\xff"},
            "custom": {"DataType": "String.custom", "StringValue": "c"},
        },
    )
    assert "MD5OfMessageAttributes" in sent
    msgs = receive(sqs, url, MessageAttributeNames=["All"], AttributeNames=["All"])
    assert len(msgs) == 1
    m = msgs[0]
    assert m["MessageId"] == sent["MessageId"]
    assert m["Body"] == "hello ünïcode ✓"
    assert m["MessageAttributes"]["blob"]["BinaryValue"] == b"\x00\x01\xff"
    assert m["MessageAttributes"]["size"] == {"StringValue": "42", "DataType": "Number"}
    assert m["Attributes"]["ApproximateReceiveCount"] == "1"
    assert int(m["Attributes"]["SentTimestamp"]) <= int(m["Attributes"]["ApproximateFirstReceiveTimestamp"])
    # Only the attributes asked for, with a digest over just those.
    sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=0)
    only = receive(sqs, url, MessageAttributeNames=["color"])[0]
    assert list(only["MessageAttributes"]) == ["color"]
    assert "Attributes" not in only
    sqs.delete_message(QueueUrl=url, ReceiptHandle=only["ReceiptHandle"])
    assert receive(sqs, url) == []
    with pytest.raises(ClientError) as e:
        sqs.delete_message(QueueUrl=url, ReceiptHandle=only["ReceiptHandle"])
    assert code(e) == "ReceiptHandleIsInvalid"
    with pytest.raises(ClientError) as e:
        sqs.delete_message(QueueUrl=url, ReceiptHandle="garbage")
    assert code(e) == "ReceiptHandleIsInvalid"


def test_trace_header_system_attribute(sqs):
    url = sqs.create_queue(QueueName=name())["QueueUrl"]
    sent = sqs.send_message(
        QueueUrl=url,
        MessageBody="traced",
        MessageSystemAttributes={"AWSTraceHeader": {"DataType": "String", "StringValue": "Root=1-5759e988-bd862e3fe1be46a994272793"}},
    )
    assert len(sent["MD5OfMessageSystemAttributes"]) == 32
    m = receive(sqs, url, AttributeNames=["AWSTraceHeader"])[0]
    assert m["Attributes"] == {"AWSTraceHeader": "Root=1-5759e988-bd862e3fe1be46a994272793"}


def test_message_size_limit(sqs):
    url = sqs.create_queue(QueueName=name())["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="x" * 262_144)
    with pytest.raises(ClientError) as e:
        sqs.send_message(QueueUrl=url, MessageBody="x" * 262_145)
    assert code(e) == "InvalidParameterValue"
    m = receive(sqs, url)[0]
    assert len(m["Body"]) == 262_144
    with pytest.raises(ClientError) as e:
        sqs.send_message(QueueUrl=url, MessageBody="bad \x01 char")
    assert code(e) == "InvalidMessageContents"


def test_visibility_timeout_and_stale_receipts(sqs):
    url = sqs.create_queue(QueueName=name(), Attributes={"VisibilityTimeout": "1"})["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="once")
    first = receive(sqs, url)[0]
    assert receive(sqs, url) == [], "hidden while in flight"
    assert attrs(sqs, url)["ApproximateNumberOfMessagesNotVisible"] == "1"
    again = receive(sqs, url, WaitTimeSeconds=5, AttributeNames=["ApproximateReceiveCount"])
    assert again and again[0]["Attributes"]["ApproximateReceiveCount"] == "2"
    assert again[0]["ReceiptHandle"] != first["ReceiptHandle"]
    with pytest.raises(ClientError) as e:
        sqs.delete_message(QueueUrl=url, ReceiptHandle=first["ReceiptHandle"])
    assert code(e) == "ReceiptHandleIsInvalid"
    sqs.delete_message(QueueUrl=url, ReceiptHandle=again[0]["ReceiptHandle"])


def test_change_visibility_extends_and_releases(sqs):
    url = sqs.create_queue(QueueName=name())["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="m")
    m = receive(sqs, url, VisibilityTimeout=1)[0]
    sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=30)
    started = time.monotonic()
    assert receive(sqs, url, WaitTimeSeconds=2) == []
    assert time.monotonic() - started >= 1.5
    sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=0)
    back = receive(sqs, url)
    assert back and back[0]["MessageId"] == m["MessageId"]
    with pytest.raises(ClientError) as e:
        sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=5)
    assert code(e) == "ReceiptHandleIsInvalid"


def test_delay_queue_and_per_message_delay(sqs):
    url = sqs.create_queue(QueueName=name(), Attributes={"DelaySeconds": "1"})["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="queue delay")
    sqs.send_message(QueueUrl=url, MessageBody="no delay", DelaySeconds=0)
    assert [m["Body"] for m in receive(sqs, url)] == ["no delay"]
    assert attrs(sqs, url)["ApproximateNumberOfMessagesDelayed"] == "1"
    got = receive(sqs, url, WaitTimeSeconds=5)
    assert [m["Body"] for m in got] == ["queue delay"]
    with pytest.raises(ClientError) as e:
        sqs.send_message(QueueUrl=url, MessageBody="x", DelaySeconds=901)
    assert code(e) == "InvalidParameterValue"


def test_long_poll_returns_when_a_message_arrives(sqs):
    url = sqs.create_queue(QueueName=name())["QueueUrl"]
    result = {}

    def poll():
        started = time.monotonic()
        result["msgs"] = receive(sqs, url, WaitTimeSeconds=10)
        result["took"] = time.monotonic() - started

    t = threading.Thread(target=poll)
    t.start()
    time.sleep(0.5)  # let the poll start waiting; the assertion below does not depend on it
    sqs.send_message(QueueUrl=url, MessageBody="wake up")
    t.join(15)
    assert [m["Body"] for m in result["msgs"]] == ["wake up"]
    assert result["took"] < 5, f"long poll returned after {result['took']:.1f}s"
    # An empty long poll waits its full time.
    started = time.monotonic()
    assert receive(sqs, url, WaitTimeSeconds=1) == []
    assert 0.9 <= time.monotonic() - started < 5
    with pytest.raises(ClientError) as e:
        receive(sqs, url, WaitTimeSeconds=21)
    assert code(e) == "InvalidParameterValue"


def test_queue_default_wait_time(sqs):
    url = sqs.create_queue(QueueName=name(), Attributes={"ReceiveMessageWaitTimeSeconds": "1"})["QueueUrl"]
    started = time.monotonic()
    assert sqs.receive_message(QueueUrl=url).get("Messages", []) == []
    assert time.monotonic() - started >= 0.9


def test_batches(sqs):
    url = sqs.create_queue(QueueName=name())["QueueUrl"]
    entries = [{"Id": f"m{i}", "MessageBody": f"body {i}"} for i in range(10)]
    r = sqs.send_message_batch(QueueUrl=url, Entries=entries)
    assert len(r["Successful"]) == 10 and not r.get("Failed")
    with pytest.raises(ClientError) as e:
        sqs.send_message_batch(QueueUrl=url, Entries=entries + [{"Id": "m10", "MessageBody": "x"}])
    assert code(e) == "AWS.SimpleQueueService.TooManyEntriesInBatchRequest"
    with pytest.raises(ClientError) as e:
        sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": "a", "MessageBody": "1"}, {"Id": "a", "MessageBody": "2"}])
    assert code(e) == "AWS.SimpleQueueService.BatchEntryIdsNotDistinct"
    with pytest.raises(ClientError) as e:
        sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": "bad id!", "MessageBody": "1"}])
    assert code(e) == "AWS.SimpleQueueService.InvalidBatchEntryId"
    mixed = sqs.send_message_batch(
        QueueUrl=url,
        Entries=[{"Id": "ok", "MessageBody": "fine"}, {"Id": "toolong", "MessageBody": "x", "DelaySeconds": 1000}],
    )
    assert [s["Id"] for s in mixed["Successful"]] == ["ok"]
    assert mixed["Failed"][0]["Id"] == "toolong" and mixed["Failed"][0]["SenderFault"]

    got = []
    while len(got) < 11:
        batch = receive(sqs, url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
        assert len(batch) <= 10
        got += batch
    assert sorted(m["Body"] for m in got) == sorted([f"body {i}" for i in range(10)] + ["fine"])
    with pytest.raises(ClientError) as e:
        receive(sqs, url, MaxNumberOfMessages=11)
    assert code(e) == "InvalidParameterValue"

    vis = sqs.change_message_visibility_batch(
        QueueUrl=url,
        Entries=[{"Id": "v0", "ReceiptHandle": got[0]["ReceiptHandle"], "VisibilityTimeout": 0},
                 {"Id": "v1", "ReceiptHandle": "nonsense", "VisibilityTimeout": 0}],
    )
    assert [s["Id"] for s in vis["Successful"]] == ["v0"]
    assert vis["Failed"][0]["Code"] == "ReceiptHandleIsInvalid"
    got[0] = receive(sqs, url, WaitTimeSeconds=1)[0]
    for chunk in (got[:9], got[9:]):
        d = sqs.delete_message_batch(
            QueueUrl=url,
            Entries=[{"Id": f"d{i}", "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(chunk)]
            + [{"Id": "stale", "ReceiptHandle": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}],
        )
        assert len(d["Successful"]) == len(chunk)
        assert d["Failed"][0]["Id"] == "stale"
    a = attrs(sqs, url)
    assert a["ApproximateNumberOfMessages"] == "0" and a["ApproximateNumberOfMessagesNotVisible"] == "0"


def test_purge(sqs):
    url = sqs.create_queue(QueueName=name())["QueueUrl"]
    for i in range(5):
        sqs.send_message(QueueUrl=url, MessageBody=str(i))
    sqs.purge_queue(QueueUrl=url)
    assert attrs(sqs, url)["ApproximateNumberOfMessages"] == "0"
    with pytest.raises(ClientError) as e:
        sqs.purge_queue(QueueUrl=url)
    assert code(e) == "AWS.SimpleQueueService.PurgeQueueInProgress"


# --- dead-letter queues -------------------------------------------------------------------------


def test_dead_letter_queue_and_redrive(sqs):
    dlq = sqs.create_queue(QueueName=name("dlq"))["QueueUrl"]
    dlq_arn = attrs(sqs, dlq)["QueueArn"]
    src = sqs.create_queue(
        QueueName=name("src"),
        Attributes={"RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "2"}),
                    "VisibilityTimeout": "0"},
    )["QueueUrl"]
    src_arn = attrs(sqs, src)["QueueArn"]
    assert json.loads(attrs(sqs, src)["RedrivePolicy"]) == {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 2}
    sent = sqs.send_message(QueueUrl=src, MessageBody="poison")
    assert len(receive(sqs, src)) == 1
    assert len(receive(sqs, src)) == 1
    assert receive(sqs, src) == [], "the third receive moves it to the dead-letter queue"
    dead = receive(sqs, dlq, AttributeNames=["All"], VisibilityTimeout=0)
    assert dead and dead[0]["MessageId"] == sent["MessageId"] and dead[0]["Body"] == "poison"
    if "DeadLetterQueueSourceArn" in dead[0]["Attributes"]:
        assert dead[0]["Attributes"]["DeadLetterQueueSourceArn"] == src_arn
    assert sqs.list_dead_letter_source_queues(QueueUrl=dlq)["queueUrls"] == [src]

    # A missing target is refused.
    with pytest.raises(ClientError) as e:
        sqs.set_queue_attributes(QueueUrl=src, Attributes={"RedrivePolicy": json.dumps(
            {"deadLetterTargetArn": dlq_arn + "-missing", "maxReceiveCount": 2})})
    assert code(e) == "InvalidParameterValue"
    # RedriveAllowPolicy denyAll keeps new sources out.
    sqs.set_queue_attributes(QueueUrl=dlq, Attributes={"RedriveAllowPolicy": json.dumps({"redrivePermission": "denyAll"})})
    with pytest.raises(ClientError) as e:
        sqs.create_queue(QueueName=name("other"), Attributes={"RedrivePolicy": json.dumps(
            {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 2})})
    assert code(e) == "InvalidParameterValue"

    if not hasattr(sqs, "start_message_move_task"):
        return  # older SDKs predate move tasks
    sqs.set_queue_attributes(QueueUrl=src, Attributes={"VisibilityTimeout": "30"})
    handle = sqs.start_message_move_task(SourceArn=dlq_arn)["TaskHandle"]
    assert handle

    def done():
        tasks = sqs.list_message_move_tasks(SourceArn=dlq_arn)["Results"]
        return tasks and tasks[0]["Status"] == "COMPLETED" and tasks[0]
    task = eventually("the move task to complete", done)
    assert task["ApproximateNumberOfMessagesMoved"] == 1
    back = receive(sqs, src, WaitTimeSeconds=2)
    assert back and back[0]["MessageId"] == sent["MessageId"]
    with pytest.raises(ClientError) as e:
        sqs.cancel_message_move_task(TaskHandle=handle)
    assert code(e) in ("AWS.SimpleQueueService.UnsupportedOperation", "UnsupportedOperation")
    with pytest.raises(ClientError) as e:
        sqs.start_message_move_task(SourceArn=src_arn)
    assert code(e) == "InvalidParameterValue"


# --- FIFO ---------------------------------------------------------------------------------------


def fifo(sqs, **attributes):
    a = {"FifoQueue": "true", **attributes}
    return sqs.create_queue(QueueName=name("fifo") + ".fifo", Attributes=a)["QueueUrl"]


def test_fifo_order_and_group_lock(sqs):
    url = fifo(sqs)
    seqs = []
    for i in range(4):
        r = sqs.send_message(QueueUrl=url, MessageBody=f"a{i}", MessageGroupId="a", MessageDeduplicationId=f"a{i}")
        seqs.append(int(r["SequenceNumber"]))
    sqs.send_message(QueueUrl=url, MessageBody="b0", MessageGroupId="b", MessageDeduplicationId="b0")
    assert seqs == sorted(seqs) and len(set(seqs)) == 4
    first = receive(sqs, url, MaxNumberOfMessages=2, AttributeNames=["All"])
    assert [m["Body"] for m in first] == ["a0", "a1"]
    assert first[0]["Attributes"]["MessageGroupId"] == "a"
    assert first[0]["Attributes"]["MessageDeduplicationId"] == "a0"
    assert int(first[0]["Attributes"]["SequenceNumber"]) == seqs[0]
    # Group a is locked while a0 and a1 are in flight; b is free.
    assert [m["Body"] for m in receive(sqs, url, MaxNumberOfMessages=10)] == ["b0"]
    assert receive(sqs, url, MaxNumberOfMessages=10) == []
    for m in first:
        sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    assert [m["Body"] for m in receive(sqs, url, MaxNumberOfMessages=10)] == ["a2", "a3"]


def test_fifo_receive_attempt_id_returns_the_same_messages(sqs):
    url = fifo(sqs, ContentBasedDeduplication="true")
    for i in range(3):
        sqs.send_message(QueueUrl=url, MessageBody=f"r{i}", MessageGroupId=f"g{i}")
    first = receive(sqs, url, MaxNumberOfMessages=2, ReceiveRequestAttemptId="attempt-1")
    retry = receive(sqs, url, MaxNumberOfMessages=2, ReceiveRequestAttemptId="attempt-1")
    assert [m["ReceiptHandle"] for m in retry] == [m["ReceiptHandle"] for m in first]
    other = receive(sqs, url, MaxNumberOfMessages=2, ReceiveRequestAttemptId="attempt-2")
    assert [m["Body"] for m in other] == ["r2"]
    sqs.delete_message(QueueUrl=url, ReceiptHandle=first[0]["ReceiptHandle"])
    assert receive(sqs, url, ReceiveRequestAttemptId="attempt-1") == []


def test_fifo_requires_group_and_dedup(sqs):
    url = fifo(sqs)
    with pytest.raises(ClientError) as e:
        sqs.send_message(QueueUrl=url, MessageBody="x", MessageDeduplicationId="d")
    assert code(e) == "MissingParameter"
    with pytest.raises(ClientError) as e:
        sqs.send_message(QueueUrl=url, MessageBody="x", MessageGroupId="g")
    assert code(e) == "InvalidParameterValue"
    with pytest.raises(ClientError) as e:
        sqs.send_message(QueueUrl=url, MessageBody="x", MessageGroupId="g", MessageDeduplicationId="d", DelaySeconds=5)
    assert code(e) == "InvalidParameterValue"


def test_fifo_deduplication(sqs):
    url = fifo(sqs)
    a = sqs.send_message(QueueUrl=url, MessageBody="one", MessageGroupId="g", MessageDeduplicationId="same")
    b = sqs.send_message(QueueUrl=url, MessageBody="two", MessageGroupId="g", MessageDeduplicationId="same")
    assert a["MessageId"] == b["MessageId"] and a["SequenceNumber"] == b["SequenceNumber"]
    cb = fifo(sqs, ContentBasedDeduplication="true")
    c = sqs.send_message(QueueUrl=cb, MessageBody="body", MessageGroupId="g")
    d = sqs.send_message(QueueUrl=cb, MessageBody="body", MessageGroupId="h")
    e = sqs.send_message(QueueUrl=cb, MessageBody="other", MessageGroupId="g")
    assert c["MessageId"] == d["MessageId"] != e["MessageId"]
    assert [m["Body"] for m in receive(sqs, url, MaxNumberOfMessages=10)] == ["one"]
    assert sorted(m["Body"] for m in receive(sqs, cb, MaxNumberOfMessages=10)) == ["body", "other"]
    # Per-group scope: the same id in another group is a new message.
    pg = fifo(sqs, DeduplicationScope="messageGroup", FifoThroughputLimit="perMessageGroupId")
    x = sqs.send_message(QueueUrl=pg, MessageBody="1", MessageGroupId="g1", MessageDeduplicationId="d")
    y = sqs.send_message(QueueUrl=pg, MessageBody="2", MessageGroupId="g2", MessageDeduplicationId="d")
    assert x["MessageId"] != y["MessageId"]


def test_fifo_batch_keeps_order(sqs):
    url = fifo(sqs, ContentBasedDeduplication="true")
    r = sqs.send_message_batch(
        QueueUrl=url,
        Entries=[{"Id": str(i), "MessageBody": f"m{i}", "MessageGroupId": "g"} for i in range(10)],
    )
    assert len(r["Successful"]) == 10
    got = receive(sqs, url, MaxNumberOfMessages=10)
    assert [m["Body"] for m in got] == [f"m{i}" for i in range(10)]


# --- the wire -----------------------------------------------------------------------------------


def raw(body, headers):
    req = urllib.request.Request(ENDPOINT + "/", data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read().decode(), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(), dict(e.headers)


def test_malformed_requests_get_aws_errors(sqs):
    status, body, headers = raw(b"{not json", {"X-Amz-Target": "AmazonSQS.ListQueues",
                                               "Content-Type": "application/x-amz-json-1.0"})
    assert status == 400 and "SerializationException" in json.loads(body)["__type"]
    status, body, _ = raw(b"{}", {"X-Amz-Target": "AmazonSQS.Explode", "Content-Type": "application/x-amz-json-1.0"})
    assert status == 400 and "UnknownOperation" in json.loads(body)["__type"]
    status, body, _ = raw(b"Action=Explode", {"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 400 and "<Code>InvalidAction</Code>" in body
    status, body, headers = raw(json.dumps({"QueueUrl": ENDPOINT + "/000000000000/none"}).encode(),
                                {"X-Amz-Target": "AmazonSQS.PurgeQueue", "Content-Type": "application/x-amz-json-1.0"})
    assert status == 400
    assert json.loads(body)["__type"].endswith("#QueueDoesNotExist")
    assert headers.get("x-amzn-query-error") == "AWS.SimpleQueueService.NonExistentQueue;Sender"
    status, body, _ = raw(json.dumps({"QueueName": 5}).encode(),
                          {"X-Amz-Target": "AmazonSQS.CreateQueue", "Content-Type": "application/x-amz-json-1.0"})
    assert status == 400 and "InvalidParameterValue" in body
    # The broker is still serving.
    sqs.list_queues()
