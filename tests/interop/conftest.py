"""What every interop suite here shares (pytest loads this file first; suites import from it).

The suites talk to a real broker that the Rust test starting them passes in through OUTPOST_*
environment variables; these helpers name resources, read AWS error codes and wait on conditions
with a deadline (never a bare sleep).
"""
import time
import uuid

# The credentials every boto3 client uses: the broker checks signatures only once access keys are
# configured, and the SDKs refuse to sign without some.
CREDENTIALS = dict(
    region_name="us-east-1",
    aws_access_key_id="test",
    aws_secret_access_key="test",
)


def name(prefix="t"):
    """A fresh resource name: suites share one broker, so no two tests collide."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def code(exc):
    """The AWS error code of a pytest.raises(ClientError) result."""
    return exc.value.response["Error"]["Code"]


def status(exc):
    """The HTTP status of a pytest.raises(ClientError) result."""
    return exc.value.response["ResponseMetadata"]["HTTPStatusCode"]


def eventually(what, cond, timeout=15.0):
    """Polls `cond` until it returns something truthy (returned) or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)
