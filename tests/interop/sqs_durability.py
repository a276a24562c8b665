"""Phases of the SQS kill -9 test (tests/sqs.rs): `fill` before the kill, `check` after restart.

fill: sends 50 messages (each acknowledged with 200 before the next), deletes 5 of them after
receiving them, and leaves 5 more in flight with a 3 s visibility timeout. Prints the state as JSON.
check: reads that JSON on stdin and verifies that exactly the 45 undeleted messages come back, the
in-flight ones only after their timeout, with their receive counts kept.
"""

import json
import os
import sys
import time

import boto3

sqs = boto3.client("sqs", endpoint_url=os.environ["OUTPOST_SQS_ENDPOINT"], region_name="us-east-1",
                   aws_access_key_id="test", aws_secret_access_key="test")


def fill():
    url = sqs.create_queue(QueueName="durable", Attributes={"VisibilityTimeout": "3"})["QueueUrl"]
    ids = [sqs.send_message(QueueUrl=url, MessageBody=f"m{i}")["MessageId"] for i in range(50)]
    got = []
    while len(got) < 10:
        got += sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10 - len(got)).get("Messages", [])
    for m in got[:5]:
        sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    json.dump({"url": url, "ids": ids, "deleted": [m["MessageId"] for m in got[:5]],
               "inflight": [m["MessageId"] for m in got[5:]], "at": time.time()}, sys.stdout)


def check():
    state = json.load(sys.stdin)
    url = sqs.get_queue_url(QueueName="durable")["QueueUrl"]
    expected = set(state["ids"]) - set(state["deleted"])
    seen = {}
    deadline = time.monotonic() + 20
    while len(seen) < len(expected):
        assert time.monotonic() < deadline, f"only {len(seen)} of {len(expected)} messages came back"
        for m in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1,
                                     AttributeNames=["ApproximateReceiveCount"]).get("Messages", []):
            assert m["MessageId"] in expected, "a deleted message came back"
            if m["MessageId"] in state["inflight"]:
                assert time.time() >= state["at"] + 2.5, "an in-flight message came back before its timeout"
                assert m["Attributes"]["ApproximateReceiveCount"] == "2"
            seen[m["MessageId"]] = m
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    assert set(seen) == expected
    print("ok", len(seen))


{"fill": fill, "check": check}[sys.argv[1]]()
