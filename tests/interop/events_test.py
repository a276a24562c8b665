"""The EventBridge API (and MQTT publishes as events) of a running Outpost, driven by boto3's
`events`, `sqs` and `sns` clients exactly as an application drives AWS, with paho publishing and
subscribing over MQTT.

Run by tests/events.rs with OUTPOST_HTTP_ENDPOINT and OUTPOST_MQTT_PORT set.
"""

import base64
import json
import os
import queue
import subprocess
import time

import boto3
import paho.mqtt.client as mqtt
import pytest
from botocore.exceptions import ClientError
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from conftest import CREDENTIALS, code, name

ENDPOINT = os.environ["OUTPOST_HTTP_ENDPOINT"]
MQTT_PORT = int(os.environ["OUTPOST_MQTT_PORT"])
KW = dict(endpoint_url=ENDPOINT, **CREDENTIALS)
ACCOUNT = "000000000000"


@pytest.fixture(scope="module")
def events():
    return boto3.client("events", **KW)


@pytest.fixture(scope="module")
def sqs():
    return boto3.client("sqs", **KW)


@pytest.fixture(scope="module")
def sns():
    return boto3.client("sns", **KW)


def new_queue(sqs, fifo=False):
    qname = name("q") + (".fifo" if fifo else "")
    attrs = {"FifoQueue": "true"} if fifo else {}
    url = sqs.create_queue(QueueName=qname, Attributes=attrs)["QueueUrl"]
    return url, f"arn:aws:sqs:us-east-1:{ACCOUNT}:{qname}"


def drain(sqs, url, want, timeout=15.0):
    """Receives and deletes until `want` messages arrived; checks that no more come."""
    got = []
    deadline = time.monotonic() + timeout
    while len(got) < want:
        assert time.monotonic() < deadline, f"only {len(got)} of {want} messages arrived"
        resp = sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1,
            MessageAttributeNames=["All"], AttributeNames=["All"],
        )
        for m in resp.get("Messages", []):
            got.append(m)
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    time.sleep(0.3)
    extra = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages", [])
    assert not extra, f"unexpected extra messages: {extra}"
    return got


def rule_to(events, pattern, targets, bus=None):
    rname = name("r")
    kw = {"EventBusName": bus} if bus else {}
    arn = events.put_rule(Name=rname, EventPattern=json.dumps(pattern), **kw)["RuleArn"]
    resp = events.put_targets(Rule=rname, Targets=targets, **kw)
    assert resp["FailedEntryCount"] == 0
    return rname, arn


def mqtt_client(v5=True):
    c = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=name("c"),
        protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
    )
    c.connect("127.0.0.1", MQTT_PORT)
    c.loop_start()
    return c


# ---------------------------------------------------------------- buses


def test_buses(events):
    assert events.describe_event_bus()["Name"] == "default"
    assert events.describe_event_bus(Name="default")["Arn"] == f"arn:aws:events:us-east-1:{ACCOUNT}:event-bus/default"
    bname = name("bus")
    arn = events.create_event_bus(Name=bname, Description="plant", Tags=[{"Key": "site", "Value": "a"}])["EventBusArn"]
    assert arn == f"arn:aws:events:us-east-1:{ACCOUNT}:event-bus/{bname}"
    d = events.describe_event_bus(Name=bname)
    assert d["Description"] == "plant" and d["Name"] == bname
    assert d["CreationTime"].year >= 2024
    with pytest.raises(ClientError) as e:
        events.create_event_bus(Name=bname)
    assert code(e) == "ResourceAlreadyExistsException"
    with pytest.raises(ClientError) as e:
        events.describe_event_bus(Name=name("missing"))
    assert code(e) == "ResourceNotFoundException"
    with pytest.raises(ClientError) as e:
        events.delete_event_bus(Name="default")
    assert code(e) == "ValidationException"
    with pytest.raises(ClientError) as e:
        events.create_event_bus(Name="bad name!")
    assert code(e) == "ValidationException"
    assert events.list_tags_for_resource(ResourceARN=arn)["Tags"] == [{"Key": "site", "Value": "a"}]
    events.tag_resource(ResourceARN=arn, Tags=[{"Key": "env", "Value": "test"}])
    events.untag_resource(ResourceARN=arn, TagKeys=["site"])
    assert events.list_tags_for_resource(ResourceARN=arn)["Tags"] == [{"Key": "env", "Value": "test"}]
    listed = events.list_event_buses(NamePrefix=bname)["EventBuses"]
    assert [b["Name"] for b in listed] == [bname]
    events.delete_event_bus(Name=bname)
    assert events.list_event_buses(NamePrefix=bname)["EventBuses"] == []
    events.delete_event_bus(Name=bname)  # deleting a missing bus succeeds


def test_list_event_buses_pages(events):
    prefix = name("page")
    for i in range(5):
        events.create_event_bus(Name=f"{prefix}-{i}")
    seen, token = [], None
    while True:
        kw = {"NextToken": token} if token else {}
        resp = events.list_event_buses(NamePrefix=prefix, Limit=2, **kw)
        assert len(resp["EventBuses"]) <= 2
        seen += [b["Name"] for b in resp["EventBuses"]]
        token = resp.get("NextToken")
        if not token:
            break
    assert sorted(seen) == [f"{prefix}-{i}" for i in range(5)]
    for i in range(5):
        events.delete_event_bus(Name=f"{prefix}-{i}")


# ---------------------------------------------------------------- rules and targets


def test_rules(events, sqs):
    rname = name("r")
    pattern = {"source": ["app"], "detail": {"level": ["error"]}}
    arn = events.put_rule(Name=rname, EventPattern=json.dumps(pattern), Description="errors",
                          Tags=[{"Key": "k", "Value": "v"}])["RuleArn"]
    assert arn == f"arn:aws:events:us-east-1:{ACCOUNT}:rule/{rname}"
    d = events.describe_rule(Name=rname)
    assert d["State"] == "ENABLED" and d["Description"] == "errors" and d["EventBusName"] == "default"
    assert json.loads(d["EventPattern"]) == pattern
    events.disable_rule(Name=rname)
    assert events.describe_rule(Name=rname)["State"] == "DISABLED"
    events.enable_rule(Name=rname)
    assert events.describe_rule(Name=rname)["State"] == "ENABLED"
    assert events.list_tags_for_resource(ResourceARN=arn)["Tags"] == [{"Key": "k", "Value": "v"}]
    assert rname in [r["Name"] for r in events.list_rules(NamePrefix=rname)["Rules"]]

    _, qarn = new_queue(sqs)
    events.put_targets(Rule=rname, Targets=[{"Id": "q", "Arn": qarn}])
    targets = events.list_targets_by_rule(Rule=rname)["Targets"]
    assert targets == [{"Id": "q", "Arn": qarn}]
    assert events.list_rule_names_by_target(TargetArn=qarn)["RuleNames"] == [rname]
    with pytest.raises(ClientError) as e:
        events.delete_rule(Name=rname)
    assert code(e) == "ValidationException"
    events.remove_targets(Rule=rname, Ids=["q"])
    assert events.list_targets_by_rule(Rule=rname)["Targets"] == []
    events.delete_rule(Name=rname)
    with pytest.raises(ClientError) as e:
        events.describe_rule(Name=rname)
    assert code(e) == "ResourceNotFoundException"


def test_rule_errors(events, sqs):
    with pytest.raises(ClientError) as e:
        events.put_rule(Name=name("r"), EventPattern='{"source": "not-an-array"}')
    assert code(e) == "InvalidEventPatternException"
    with pytest.raises(ClientError) as e:
        events.put_rule(Name=name("r"), EventPattern="{not json")
    assert code(e) == "InvalidEventPatternException"
    with pytest.raises(ClientError) as e:
        events.put_rule(Name=name("r"), EventPattern='{"source":["a"]}', EventBusName=name("nobus"))
    assert code(e) == "ResourceNotFoundException"
    with pytest.raises(ClientError) as e:
        events.put_rule(Name="bad name", EventPattern='{"source":["a"]}')
    assert code(e) == "ValidationException"
    with pytest.raises(ClientError) as e:
        events.describe_rule(Name=name("missing"))
    assert code(e) == "ResourceNotFoundException"
    rname = name("r")
    events.put_rule(Name=rname, EventPattern='{"source":["a"]}')
    _, qarn = new_queue(sqs)
    with pytest.raises(ClientError) as e:
        events.put_targets(Rule=rname, Targets=[{"Id": str(i), "Arn": qarn} for i in range(6)])
    assert code(e) == "LimitExceededException"
    with pytest.raises(ClientError) as e:
        events.put_targets(Rule=rname, Targets=[{"Id": "x", "Arn": "arn:aws:lambda:us-east-1:000000000000:function:f"}])
    assert code(e) == "ValidationException"
    with pytest.raises(ClientError) as e:
        events.put_targets(Rule=rname, Targets=[{"Id": "x", "Arn": qarn, "Input": "{", }])
    assert code(e) == "ValidationException"
    with pytest.raises(ClientError) as e:
        events.put_targets(Rule=name("missing"), Targets=[{"Id": "x", "Arn": qarn}])
    assert code(e) == "ResourceNotFoundException"
    events.delete_rule(Name=rname)


def test_scheduled_rules(events, sqs):
    """ScheduleExpression as boto3 puts it: kept, described, listed; AWS's refusals."""
    rname = name("r")
    arn = events.put_rule(Name=rname, ScheduleExpression="rate(5 minutes)", State="ENABLED")["RuleArn"]
    assert arn == f"arn:aws:events:us-east-1:{ACCOUNT}:rule/{rname}"
    got = events.describe_rule(Name=rname)
    assert got["ScheduleExpression"] == "rate(5 minutes)"
    assert "EventPattern" not in got
    assert got["EventBusName"] == "default"
    listed = [r for r in events.list_rules(NamePrefix=rname)["Rules"] if r["Name"] == rname]
    assert listed[0]["ScheduleExpression"] == "rate(5 minutes)"
    _, qarn = new_queue(sqs)
    assert events.put_targets(Rule=rname, Targets=[{"Id": "q", "Arn": qarn, "Input": '{"job": 1}'}])["FailedEntryCount"] == 0
    # Both a pattern and a schedule: the rule keeps both.
    events.put_rule(Name=rname, ScheduleExpression="cron(0 12 ? * MON-FRI *)", EventPattern='{"source":["app"]}')
    got = events.describe_rule(Name=rname)
    assert got["ScheduleExpression"] == "cron(0 12 ? * MON-FRI *)"
    assert json.loads(got["EventPattern"]) == {"source": ["app"]}
    for bad in ["rate(1 minutes)", "rate(0 minutes)", "rate(5 seconds)", "cron(0 12 * * * *)",
                "cron(0 12 ? * ? *)", "cron(0 12 * *)", "cron(0 12 * * ? 2200)", "daily"]:
        with pytest.raises(ClientError) as e:
            events.put_rule(Name=name("r"), ScheduleExpression=bad)
        assert code(e) == "ValidationException", bad
        assert e.value.response["Error"]["Message"] == "Parameter ScheduleExpression is not valid.", bad
    bus = name("bus")
    events.create_event_bus(Name=bus)
    with pytest.raises(ClientError) as e:
        events.put_rule(Name=name("r"), ScheduleExpression="rate(1 hour)", EventBusName=bus)
    assert code(e) == "ValidationException"
    assert "only on the default event bus" in e.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as e:
        events.put_rule(Name=name("r"))
    assert code(e) == "ValidationException"
    events.remove_targets(Rule=rname, Ids=["q"])
    events.delete_rule(Name=rname)
    events.delete_event_bus(Name=bus)


def test_list_rules_pages(events):
    prefix = name("lr")
    for i in range(7):
        events.put_rule(Name=f"{prefix}-{i}", EventPattern='{"source":["x"]}')
    seen, token = [], None
    while True:
        kw = {"NextToken": token} if token else {}
        resp = events.list_rules(NamePrefix=prefix, Limit=3, **kw)
        seen += [r["Name"] for r in resp["Rules"]]
        token = resp.get("NextToken")
        if not token:
            break
    assert sorted(seen) == [f"{prefix}-{i}" for i in range(7)]
    for i in range(7):
        events.delete_rule(Name=f"{prefix}-{i}")


# ---------------------------------------------------------------- the pattern grammar


EVENT = {
    "id": "7bf73129-1428-4cd3-a780-95db273d1602",
    "detail-type": "EC2 Instance State-change Notification",
    "source": "aws.ec2",
    "account": "123456789012",
    "time": "2015-11-11T21:29:54Z",
    "region": "us-east-1",
    "resources": ["arn:aws:ec2:us-east-1:123456789012:instance/i-abcd1111"],
    "detail": {
        "instance-id": "i-abcd1111",
        "state": "pending",
        "c-count": 5,
        "d-count": 3,
        "x-limit": 301.8,
        "source-ip": "10.0.0.123",
        "nothing": None,
        "empty": "",
        "location": {"city": "Lyon", "tags": ["north", "cold"]},
        "filename": "image.png",
        "name": "Alice",
    },
}

# (pattern, matches EVENT) — from AWS's "Content filtering in event patterns" examples.
PATTERNS = [
    ({"source": ["aws.ec2"]}, True),
    ({"source": ["aws.s3"]}, False),
    ({"detail": {"state": ["pending", "running"]}}, True),
    ({"detail": {"location": {"city": ["Lyon"]}}}, True),
    ({"detail": {"location": {"tags": ["cold"]}}}, True),
    ({"time": [{"prefix": "2015-11"}]}, True),
    ({"detail": {"filename": [{"suffix": ".png"}]}}, True),
    ({"detail": {"filename": [{"suffix": ".jpg"}]}}, False),
    ({"detail": {"name": [{"equals-ignore-case": "alice"}]}}, True),
    ({"detail": {"state": [{"anything-but": "initializing"}]}}, True),
    ({"detail": {"state": [{"anything-but": ["stopped", "pending"]}]}}, False),
    ({"detail": {"state": [{"anything-but": {"prefix": "pen"}}]}}, False),
    ({"detail": {"filename": [{"anything-but": {"suffix": ".txt"}}]}}, True),
    ({"detail": {"filename": [{"anything-but": {"wildcard": "*.png"}}]}}, False),
    ({"detail": {"c-count": [{"numeric": [">", 0, "<=", 5]}]}}, True),
    ({"detail": {"d-count": [{"numeric": ["<", 10]}]}}, True),
    ({"detail": {"x-limit": [{"numeric": ["=", 3.018e2]}]}}, True),
    ({"detail": {"x-limit": [{"numeric": [">=", 302]}]}}, False),
    ({"detail": {"source-ip": [{"cidr": "10.0.0.0/24"}]}}, True),
    ({"detail": {"source-ip": [{"cidr": "10.0.1.0/24"}]}}, False),
    ({"detail": {"state": [{"exists": True}]}}, True),
    ({"detail": {"missing": [{"exists": False}]}}, True),
    ({"detail": {"state": [{"exists": False}]}}, False),
    ({"detail": {"nothing": [None]}}, True),
    ({"detail": {"empty": [""]}}, True),
    ({"detail": {"filename": [{"wildcard": "image.*"}]}}, True),
    ({"detail-type": [{"wildcard": "EC2 * Notification"}]}, True),
    ({"detail": {"$or": [{"c-count": [{"numeric": [">", 10]}]}, {"d-count": [3]}]}}, True),
    ({"detail": {"$or": [{"c-count": [{"numeric": [">", 10]}]}, {"d-count": [4]}]}}, False),
    ({"source": ["aws.ec2"], "detail": {"state": ["running"]}}, False),
]


@pytest.mark.parametrize("pattern,want", PATTERNS)
def test_event_pattern_grammar(events, pattern, want):
    got = events.test_event_pattern(EventPattern=json.dumps(pattern), Event=json.dumps(EVENT))["Result"]
    assert got is want, pattern


def test_test_event_pattern_errors(events):
    with pytest.raises(ClientError) as e:
        events.test_event_pattern(EventPattern='{"source": [{"numeric": ["<"]}]}', Event=json.dumps(EVENT))
    assert code(e) == "InvalidEventPatternException"
    broken = dict(EVENT)
    del broken["account"]
    with pytest.raises(ClientError) as e:
        events.test_event_pattern(EventPattern='{"source": ["aws.ec2"]}', Event=json.dumps(broken))
    assert code(e) == "ValidationException"


def test_test_event_pattern_envelope_as_aws_reads_it(events):
    # AWS evaluates an event without "resources", and a detail-type given as an array.
    bare = {k: v for k, v in EVENT.items() if k != "resources"}
    assert events.test_event_pattern(EventPattern=json.dumps({"source": [EVENT["source"]]}),
                                     Event=json.dumps(bare))["Result"] is True
    listed = dict(EVENT, **{"detail-type": ["Build State Change"]})
    pattern = {"detail-type": [{"equals-ignore-case": "build state change"}]}
    assert events.test_event_pattern(EventPattern=json.dumps(pattern), Event=json.dumps(listed))["Result"] is True


# ---------------------------------------------------------------- PutEvents to targets


def test_put_events_to_queue(events, sqs):
    url, qarn = new_queue(sqs)
    source = name("app")
    rule_to(events, {"source": [source], "detail": {"level": ["error"]}}, [{"Id": "q", "Arn": qarn}])
    resp = events.put_events(Entries=[
        {"Source": source, "DetailType": "log", "Detail": json.dumps({"level": "error", "n": 1}),
         "Resources": ["r1"]},
        {"Source": source, "DetailType": "log", "Detail": json.dumps({"level": "info", "n": 2})},
    ])
    assert resp["FailedEntryCount"] == 0
    ids = [e["EventId"] for e in resp["Entries"]]
    got = drain(sqs, url, 1)
    event = json.loads(got[0]["Body"])
    assert event["id"] == ids[0]
    assert event["source"] == source and event["detail-type"] == "log"
    assert event["detail"] == {"level": "error", "n": 1}
    assert event["resources"] == ["r1"] and event["account"] == ACCOUNT
    assert event["region"] == "us-east-1" and event["version"] == "0"
    assert event["time"].endswith("Z")


def test_put_events_entry_errors(events):
    resp = events.put_events(Entries=[
        {"Source": "a", "DetailType": "t", "Detail": "{not json"},
        {"DetailType": "t", "Detail": "{}"},
        {"Source": "a", "DetailType": "t", "Detail": "{}"},
        {"Source": "a", "DetailType": "t", "Detail": "{}", "EventBusName": name("nobus")},
    ])
    assert resp["FailedEntryCount"] == 3
    e = resp["Entries"]
    assert e[0]["ErrorCode"] == "MalformedDetail"
    assert e[1]["ErrorCode"] == "InvalidArgument"
    assert "EventId" in e[2]
    assert e[3]["ErrorCode"] == "InvalidArgument"
    with pytest.raises(ClientError) as ex:
        events.put_events(Entries=[{"Source": "a", "DetailType": "t", "Detail": "{}"}] * 11)
    assert code(ex) == "ValidationException"
    with pytest.raises(ClientError) as ex:
        events.put_events(Entries=[{"Source": "a", "DetailType": "t", "Detail": json.dumps({"x": "y" * 300_000})}])
    assert code(ex) == "ValidationException"


def test_disabled_rule_routes_nothing(events, sqs):
    url, qarn = new_queue(sqs)
    source = name("app")
    rname, _ = rule_to(events, {"source": [source]}, [{"Id": "q", "Arn": qarn}])
    events.disable_rule(Name=rname)
    events.put_events(Entries=[{"Source": source, "DetailType": "t", "Detail": '{"n":1}'}])
    events.enable_rule(Name=rname)
    events.put_events(Entries=[{"Source": source, "DetailType": "t", "Detail": '{"n":2}'}])
    got = drain(sqs, url, 1)
    assert json.loads(got[0]["Body"])["detail"] == {"n": 2}


def test_custom_bus(events, sqs):
    bus = name("bus")
    events.create_event_bus(Name=bus)
    url, qarn = new_queue(sqs)
    source = name("app")
    rule_to(events, {"source": [source]}, [{"Id": "q", "Arn": qarn}], bus=bus)
    events.put_events(Entries=[{"Source": source, "DetailType": "t", "Detail": '{"bus":"default"}'}])
    events.put_events(Entries=[{"Source": source, "DetailType": "t", "Detail": '{"bus":"custom"}',
                                "EventBusName": bus}])
    got = drain(sqs, url, 1)
    assert json.loads(got[0]["Body"])["detail"] == {"bus": "custom"}


def test_input_forms(events, sqs):
    url, qarn = new_queue(sqs)
    source = name("app")
    rname, rarn = rule_to(events, {"source": [source]}, [
        {"Id": "whole", "Arn": qarn},
        {"Id": "const", "Arn": qarn, "Input": '{"constant": true}'},
        {"Id": "path", "Arn": qarn, "InputPath": "$.detail.reading"},
        {"Id": "tx", "Arn": qarn, "InputTransformer": {
            "InputPathsMap": {"site": "$.detail.site", "temp": "$.detail.reading.temp"},
            "InputTemplate": '{"where": <site>, "t": <temp>, "rule": "<aws.events.rule-name>"}',
        }},
        {"Id": "txt", "Arn": qarn, "InputTransformer": {
            "InputPathsMap": {"site": "$.detail.site"},
            "InputTemplate": '"site <site> is hot"',
        }},
    ])
    events.put_events(Entries=[{"Source": source, "DetailType": "t",
                                "Detail": json.dumps({"site": "lyon", "reading": {"temp": 51.5}})}])
    bodies = sorted(m["Body"] for m in drain(sqs, url, 5))
    parsed = [json.loads(b) if b.startswith(("{", "\"")) else b for b in bodies]
    assert {"constant": True} in parsed
    assert {"temp": 51.5} in parsed
    assert {"where": "lyon", "t": 51.5, "rule": rname} in parsed
    assert "site lyon is hot" in parsed
    assert any(isinstance(p, dict) and p.get("source") == source for p in parsed)


def test_fifo_queue_target(events, sqs):
    url, qarn = new_queue(sqs, fifo=True)
    source = name("app")
    with pytest.raises(ClientError) as e:
        rule_to(events, {"source": [source]}, [{"Id": "q", "Arn": qarn}])
    assert code(e) == "ValidationException"
    rule_to(events, {"source": [source]}, [{"Id": "q", "Arn": qarn, "SqsParameters": {"MessageGroupId": "g1"}}])
    for i in range(5):
        events.put_events(Entries=[{"Source": source, "DetailType": "t", "Detail": json.dumps({"i": i})}])
    got = drain(sqs, url, 5)
    assert [json.loads(m["Body"])["detail"]["i"] for m in got] == list(range(5))
    assert all(m["Attributes"]["MessageGroupId"] == "g1" for m in got)


def test_topic_target(events, sqs, sns):
    url, qarn = new_queue(sqs)
    topic = sns.create_topic(Name=name("topic"))["TopicArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=qarn, Attributes={"RawMessageDelivery": "true"})
    source = name("app")
    rule_to(events, {"source": [source]}, [{"Id": "t", "Arn": topic, "InputPath": "$.detail"}])
    events.put_events(Entries=[{"Source": source, "DetailType": "t", "Detail": '{"via":"sns"}'}])
    got = drain(sqs, url, 1)
    assert json.loads(got[0]["Body"]) == {"via": "sns"}


def test_mqtt_target_with_template(events):
    received = queue.Queue()
    sub = mqtt_client()
    sub.on_message = lambda c, u, m: received.put((m.topic, m.payload, m.qos))
    site = name("site")
    sub.subscribe(f"alerts/{site}/#", qos=1)
    time.sleep(0.3)
    source = name("app")
    rule_to(events, {"source": [source]}, [
        {"Id": "m", "Arn": "mqtt:alerts/${detail.site}/hot", "InputPath": "$.detail"},
        {"Id": "iot", "Arn": f"arn:aws:iot:us-east-1:{ACCOUNT}:topic/alerts/{site}/iot"},
    ])
    events.put_events(Entries=[{"Source": source, "DetailType": "t",
                                "Detail": json.dumps({"site": site, "temp": 70})}])
    got = {}
    deadline = time.monotonic() + 10
    while len(got) < 2:
        topic, payload, qos = received.get(timeout=max(0.1, deadline - time.monotonic()))
        got[topic] = json.loads(payload)
    assert got[f"alerts/{site}/hot"] == {"site": site, "temp": 70}
    assert got[f"alerts/{site}/iot"]["detail"] == {"site": site, "temp": 70}
    sub.loop_stop()
    sub.disconnect()


def test_failing_target_goes_to_dead_letter_queue(events, sqs):
    doomed_url, doomed_arn = new_queue(sqs)
    dlq_url, dlq_arn = new_queue(sqs)
    source = name("app")
    rname, rarn = rule_to(events, {"source": [source]}, [{
        "Id": "doomed", "Arn": doomed_arn,
        "RetryPolicy": {"MaximumRetryAttempts": 1, "MaximumEventAgeInSeconds": 60},
        "DeadLetterConfig": {"Arn": dlq_arn},
    }])
    sqs.delete_queue(QueueUrl=doomed_url)
    resp = events.put_events(Entries=[{"Source": source, "DetailType": "t", "Detail": '{"lost": false}'}])
    assert resp["FailedEntryCount"] == 0
    got = drain(sqs, dlq_url, 1, timeout=30)
    assert json.loads(got[0]["Body"])["detail"] == {"lost": False}
    attrs = got[0]["MessageAttributes"]
    assert attrs["RULE_ARN"]["StringValue"] == rarn
    assert attrs["TARGET_ARN"]["StringValue"] == doomed_arn
    assert attrs["ERROR_CODE"]["StringValue"]


# ---------------------------------------------------------------- MQTT publishes are events


def test_mqtt_telemetry_rule_to_queue(events, sqs):
    url, qarn = new_queue(sqs)
    prefix = name("sensors")
    rule_to(events, {
        "source": ["outpost.mqtt"],
        "detail-type": [{"wildcard": f"{prefix}/*/telemetry"}],
        "detail": {"temp": [{"numeric": [">", 50]}]},
    }, [{"Id": "alerts", "Arn": qarn}])
    pub = mqtt_client()
    props = Properties(PacketTypes.PUBLISH)
    props.ContentType = "application/json"
    props.UserProperty = [("site", "lyon")]
    infos = [
        pub.publish(f"{prefix}/d1/telemetry", json.dumps({"temp": 72.5}), qos=1, properties=props),
        pub.publish(f"{prefix}/d2/telemetry", json.dumps({"temp": 20}), qos=1),
        pub.publish(f"{prefix}/d3/status", json.dumps({"temp": 99}), qos=1),
    ]
    for i in infos:
        i.wait_for_publish(timeout=10)
        assert i.is_published()
    got = drain(sqs, url, 1)
    event = json.loads(got[0]["Body"])
    assert event["source"] == "outpost.mqtt"
    assert event["detail-type"] == f"{prefix}/d1/telemetry"
    assert event["detail"] == {"temp": 72.5}
    assert event["resources"] == [pub._client_id.decode()]
    assert event["mqtt"]["qos"] == 1
    assert event["mqtt"]["content-type"] == "application/json"
    assert event["mqtt"]["user-properties"] == [{"site": "lyon"}] or event["mqtt"]["user-properties"] == {"site": "lyon"}
    pub.loop_stop()
    pub.disconnect()


def test_mosquitto_pub_binary_payload_is_base64(events, sqs):
    url, qarn = new_queue(sqs)
    topic = name("raw") + "/blob"
    rule_to(events, {"source": ["outpost.mqtt"], "detail-type": [topic]}, [{"Id": "q", "Arn": qarn}])
    subprocess.run(["mosquitto_pub", "-p", str(MQTT_PORT), "-q", "1", "-t", topic, "-m", "not json \x01"],
                   check=True, timeout=10)
    subprocess.run(["mosquitto_pub", "-p", str(MQTT_PORT), "-q", "1", "-t", topic, "-m", "42"],
                   check=True, timeout=10)
    got = drain(sqs, url, 2)
    details = [json.loads(m["Body"])["detail"] for m in got]
    assert {"payload-base64": base64.b64encode(b"not json \x01").decode()} in details
    assert {"value": 42} in details


def test_mqtt_event_reaches_mqtt_target_without_looping(events):
    """A rule from MQTT back to MQTT: the copy is published by the broker, not offered again."""
    received = queue.Queue()
    sub = mqtt_client(v5=False)
    sub.on_message = lambda c, u, m: received.put((m.topic, m.payload))
    base = name("loop")
    sub.subscribe(f"{base}/#", qos=1)
    time.sleep(0.3)
    rule_to(events, {"source": ["outpost.mqtt"], "detail-type": [{"prefix": f"{base}/"}]},
            [{"Id": "m", "Arn": f"mqtt:{base}/copy", "InputPath": "$.detail"}])
    pub = mqtt_client(v5=False)
    pub.publish(f"{base}/in", '{"x":1}', qos=1).wait_for_publish(timeout=10)
    seen = []
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        try:
            seen.append(received.get(timeout=0.2))
        except queue.Empty:
            pass
    topics = sorted(t for t, _ in seen)
    assert topics == [f"{base}/copy", f"{base}/in"], topics
    for c in (sub, pub):
        c.loop_stop()
        c.disconnect()


# ---------------------------------------------------------------- raw protocol errors


def test_raw_protocol_errors():
    import urllib.request

    def call(target, body):
        req = urllib.request.Request(ENDPOINT + "/", data=body, method="POST", headers={
            "X-Amz-Target": target, "Content-Type": "application/x-amz-json-1.1"})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    status, body = call("AWSEvents.PutRule", b"[1,2]")
    assert status == 400 and body["__type"] == "SerializationException"
    status, body = call("AWSEvents.PutRule", b"{}")
    assert status == 400 and body["__type"] == "ValidationException"
    status, body = call("AWSEvents.Nope", b"{}")
    assert status == 400 and body["__type"] == "UnknownOperationException"
    deep = b"[" * 100_000 + b"]" * 100_000
    status, body = call("AWSEvents.PutEvents", deep)
    assert status == 400
    status, body = call("AWSEvents.TestEventPattern", json.dumps({
        "EventPattern": "{\"a\":" * 5000 + "1" + "}" * 5000, "Event": json.dumps(EVENT)}).encode())
    assert status == 400 and body["__type"] == "InvalidEventPatternException"
    status, body = call("AWSEvents.DescribeEventBus", b"")
    assert status == 200 and body["Name"] == "default"


def test_metrics_count_routing(events, sqs):
    import urllib.request

    url, qarn = new_queue(sqs)
    source = name("app")
    rule_to(events, {"source": [source]}, [{"Id": "q", "Arn": qarn}])
    events.put_events(Entries=[{"Source": source, "DetailType": "t", "Detail": "{}"}])
    drain(sqs, url, 1)
    text = urllib.request.urlopen(ENDPOINT + "/metrics", timeout=10).read().decode()
    figures = {l.split()[0]: float(l.split()[1]) for l in text.splitlines()
               if l.startswith("outpost_routing_")}
    assert figures["outpost_routing_rules"] >= 1
    assert figures["outpost_routing_events_total"] >= 1
    assert figures["outpost_routing_delivered_total"] >= 1
    assert "outpost_routing_deliveries_pending" in figures


# ---------------------------------------------------------------- archives and replays


def wait_replay(events, rname, timeout=20):
    deadline = time.monotonic() + timeout
    while True:
        d = events.describe_replay(ReplayName=rname)
        if d["State"] in ("COMPLETED", "FAILED", "CANCELLED"):
            return d
        assert time.monotonic() < deadline, d
        time.sleep(0.1)


def test_archive_and_replay_a_time_range(events, sqs):
    import datetime

    source = name("arch")
    bus_arn = f"arn:aws:events:us-east-1:{ACCOUNT}:event-bus/default"
    aname = name("a")
    created = events.create_archive(ArchiveName=aname, EventSourceArn=bus_arn,
                                    EventPattern=json.dumps({"source": [source]}),
                                    Description="all of it", RetentionDays=1)
    assert created["ArchiveArn"] == f"arn:aws:events:us-east-1:{ACCOUNT}:archive/{aname}"
    assert created["State"] == "ENABLED"
    with pytest.raises(ClientError) as e:
        events.create_archive(ArchiveName=aname, EventSourceArn=bus_arn)
    assert code(e) == "ResourceAlreadyExistsException"
    with pytest.raises(ClientError) as e:
        events.create_archive(ArchiveName=name("a"), EventSourceArn=bus_arn + "-missing")
    assert code(e) == "ResourceNotFoundException"
    with pytest.raises(ClientError) as e:
        events.create_archive(ArchiveName=name("a"), EventSourceArn=bus_arn, EventPattern="{bad")
    assert code(e) == "InvalidEventPatternException"

    early = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
    late = datetime.datetime(2026, 6, 1, tzinfo=datetime.timezone.utc)
    entries = [{"Source": source, "DetailType": "t", "Detail": json.dumps({"n": i}),
                "Time": early if i < 3 else late} for i in range(5)]
    entries.append({"Source": name("other"), "DetailType": "t", "Detail": "{}"})
    assert events.put_events(Entries=entries)["FailedEntryCount"] == 0
    d = events.describe_archive(ArchiveName=aname)
    assert d["EventCount"] == 5 and d["SizeBytes"] > 0 and d["RetentionDays"] == 1
    assert d["EventPattern"] == json.dumps({"source": [source]}) and d["Description"] == "all of it"
    listed = events.list_archives(NamePrefix=aname)["Archives"]
    assert [a["ArchiveName"] for a in listed] == [aname] and listed[0]["EventCount"] == 5
    events.update_archive(ArchiveName=aname, Description="changed")
    assert events.describe_archive(ArchiveName=aname)["Description"] == "changed"

    # A rule made after the events: only a replay brings them to its queue.
    url, qarn = new_queue(sqs)
    rname, rarn = rule_to(events, {"source": [source]}, [{"Id": "q", "Arn": qarn}])
    replay = name("replay")
    started = events.start_replay(
        ReplayName=replay, EventSourceArn=created["ArchiveArn"],
        EventStartTime=early - datetime.timedelta(days=1),
        EventEndTime=early + datetime.timedelta(days=1),
        Destination={"Arn": bus_arn, "FilterArns": [rarn]})
    assert started["State"] in ("STARTING", "RUNNING", "COMPLETED")
    done = wait_replay(events, replay)
    assert done["State"] == "COMPLETED", done
    assert done["Destination"]["FilterArns"] == [rarn]
    assert done["EventLastReplayedTime"] == early
    got = [json.loads(m["Body"]) for m in drain(sqs, url, 3)]
    assert sorted(e["detail"]["n"] for e in got) == [0, 1, 2]
    assert all(e["replay-name"] == replay for e in got)
    # Replayed events are not archived again.
    assert events.describe_archive(ArchiveName=aname)["EventCount"] == 5
    assert replay in [r["ReplayName"] for r in events.list_replays(NamePrefix=replay)["Replays"]]
    with pytest.raises(ClientError) as e:
        events.cancel_replay(ReplayName=replay)
    assert code(e) == "IllegalStatusException"
    with pytest.raises(ClientError) as e:
        events.start_replay(ReplayName=replay, EventSourceArn=created["ArchiveArn"],
                            EventStartTime=early, EventEndTime=late, Destination={"Arn": bus_arn})
    assert code(e) == "ResourceAlreadyExistsException"
    with pytest.raises(ClientError) as e:
        events.start_replay(ReplayName=name("r"), EventSourceArn=created["ArchiveArn"],
                            EventStartTime=late, EventEndTime=early, Destination={"Arn": bus_arn})
    assert code(e) == "ValidationException"
    with pytest.raises(ClientError) as e:
        events.describe_replay(ReplayName=name("missing"))
    assert code(e) == "ResourceNotFoundException"

    events.delete_archive(ArchiveName=aname)
    with pytest.raises(ClientError) as e:
        events.describe_archive(ArchiveName=aname)
    assert code(e) == "ResourceNotFoundException"


def test_mqtt_publishes_are_archived_and_replayed(events, sqs):
    import datetime

    bus_arn = f"arn:aws:events:us-east-1:{ACCOUNT}:event-bus/default"
    topic = name("arch") + "/telemetry"
    aname = name("a")
    arn = events.create_archive(ArchiveName=aname, EventSourceArn=bus_arn, EventPattern=json.dumps(
        {"source": ["outpost.mqtt"], "detail-type": [topic]}))["ArchiveArn"]
    before = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=5)
    pub = mqtt_client()
    for i in range(3):
        pub.publish(topic, json.dumps({"i": i}), qos=1).wait_for_publish(timeout=10)
    pub.loop_stop()
    pub.disconnect()
    assert events.describe_archive(ArchiveName=aname)["EventCount"] == 3
    url, qarn = new_queue(sqs)
    rule_to(events, {"source": ["outpost.mqtt"], "detail-type": [topic]}, [{"Id": "q", "Arn": qarn}])
    replay = name("replay")
    events.start_replay(ReplayName=replay, EventSourceArn=arn, EventStartTime=before,
                        EventEndTime=datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=5),
                        Destination={"Arn": bus_arn})
    assert wait_replay(events, replay)["State"] == "COMPLETED"
    got = [json.loads(m["Body"]) for m in drain(sqs, url, 3)]
    assert sorted(e["detail"]["i"] for e in got) == [0, 1, 2]
    events.delete_archive(ArchiveName=aname)
