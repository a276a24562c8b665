"""The web console in a real browser: Debian's Chromium driven by Playwright for Python.

A user logs in; the overview's figures move while a paho load runs; a client is kicked; a queue
gets a test message and is purged (checked with boto3 too); a user and a role are created and a
device's denied publish (PUBACK 0x87) becomes allowed; the live view shows a message as it is
published. The overview's screenshot is written where OUTPOST_SCREENSHOT says (the README's).

The broker is started by tests/console.rs with a password file holding `operator`, an access key
for it (boto3's checks) and an ACL granting it everything; OUTPOST_HTTP_ENDPOINT, OUTPOST_MQTT_PORT and OUTPOST_WS_PORT say where.
"""
import os
import re
import threading
import time

import boto3
import paho.mqtt.client as mqtt
import pytest
from conftest import eventually, name
from paho.mqtt.properties import Properties
from paho.mqtt.packettypes import PacketTypes
from playwright.sync_api import expect, sync_playwright

HTTP = os.environ["OUTPOST_HTTP_ENDPOINT"]
MQTT_PORT = int(os.environ["OUTPOST_MQTT_PORT"])
OPERATOR = ("operator", "op-secret-1")
WAIT_MS = 15_000

# The flags the machine's closed network needs (no background connections, no updates).
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


@pytest.fixture(scope="module")
def page():
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=os.environ.get("OUTPOST_CHROMIUM", "/usr/bin/chromium"),
            headless=True, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        pg = context.new_page()
        pg.set_default_timeout(WAIT_MS)
        yield pg
        browser.close()


class Device:
    """A paho MQTT 5 client that records the reason code of each PUBACK."""

    def __init__(self, client_id, user=None, password=None):
        self.acks = {}
        self.disconnected = threading.Event()
        self.disconnect_reason = None
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                             protocol=mqtt.MQTTv5)
        if user:
            self.c.username_pw_set(user, password)
        self.c.on_publish = lambda c, u, mid, rc, props: self.acks.__setitem__(mid, rc.value)
        self.c.on_disconnect = self._gone
        connected = threading.Event()
        self.c.on_connect = lambda c, u, f, rc, props: connected.set() if not rc.is_failure else None
        self.c.connect("127.0.0.1", MQTT_PORT)
        self.c.loop_start()
        assert connected.wait(10), f"{client_id} connects"

    def _gone(self, c, u, flags, rc, props):
        self.disconnect_reason = rc.value
        self.disconnected.set()

    def publish(self, topic, payload="x"):
        """Publishes at QoS 1; the PUBACK's reason code."""
        info = self.c.publish(topic, payload, qos=1)
        return eventually("a PUBACK", lambda: self.acks.get(info.mid, None) is not None and (self.acks[info.mid],))[0]

    def close(self):
        self.c.disconnect()
        self.c.loop_stop()


def test_login_is_required_and_checked(page):
    page.goto(HTTP + "/console")
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()
    login = page.locator("#login")
    login.get_by_label("Username").fill(OPERATOR[0])
    login.get_by_label("Password").fill("wrong password")
    page.get_by_role("button", name="Log in").click()
    expect(page.locator("#login-error")).to_have_text(re.compile("Wrong username or password"))
    login.get_by_label("Password").fill(OPERATOR[1])
    page.get_by_role("button", name="Log in").click()
    expect(page.locator("#who")).to_have_text("logged in as operator")
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()


class Load:
    """Three paho publishers at QoS 0 and a subscriber receiving everything, until stopped."""

    def __init__(self):
        self.stop = threading.Event()
        self.sub = Device(name("watcher"), *OPERATOR)
        self.sub.c.subscribe("load/#", qos=0)
        self.pubs = [Device(name("load"), *OPERATOR) for _ in range(3)]
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self):
        n = 0
        while not self.stop.is_set():
            for d in self.pubs:
                d.c.publish(f"load/{d.c._client_id.decode()}", str(n), qos=0)
            n += 1
            time.sleep(0.005)

    def close(self):
        self.stop.set()
        self.t.join()
        for d in self.pubs + [self.sub]:
            d.close()


def rate(page, chart, series):
    text = page.locator(f'#legend-{chart} [data-series="{series}"]').inner_text()
    return float(re.search(r"([\d.]+)/s", text).group(1))


def test_overview_moves_while_a_load_runs(page):
    page.goto(HTTP + "/console#overview")
    load = Load()
    try:
        expect(page.locator("#card-connected")).to_have_text(re.compile(r"^[4-9]|^\d\d"))
        # The MQTT rates in the legends leave 0 once two samples saw the load.
        eventually("a nonzero MQTT rate in", lambda: rate(page, "in", "mqtt") > 10)
        eventually("a nonzero MQTT rate out", lambda: rate(page, "out", "mqtt") > 10)
    finally:
        load.close()
    eventually("the connection count to fall", lambda: int(page.locator("#card-connected").inner_text()) < 4)


def test_kick_a_client(page):
    victim = Device(name("victim"), *OPERATOR)
    cid = victim.c._client_id.decode()
    page.goto(HTTP + "/console#clients")
    page.locator("#client-search").get_by_label("Search").fill(cid)
    page.get_by_role("button", name="Search").click()
    page.get_by_role("button", name="Kick " + cid).click()
    assert victim.disconnected.wait(10), "the kicked client is disconnected"
    assert victim.disconnect_reason == 0x98, "MQTT 5: Administrative action"
    expect(page.locator("#status")).to_have_text(cid + " was disconnected")
    victim.c.loop_stop()


def test_send_to_and_purge_a_queue(page):
    q = name("jobs")
    page.goto(HTTP + "/console#queues")
    page.locator("#queue-create").get_by_label("New queue").fill(q)
    page.get_by_role("button", name="Create queue").click()
    row = page.locator(f'tr[data-queue="{q}"]')
    row.get_by_role("button", name="Send test message").click()
    page.get_by_label("Message body").fill("from the browser")
    page.get_by_role("button", name="Send", exact=True).click()
    expect(row.locator("td.visible")).to_have_text("1")
    row.get_by_role("button", name="Peek").click()
    expect(page.locator("#queue-detail")).to_contain_text("from the browser")
    sqs = boto3.client("sqs", endpoint_url=HTTP, region_name="us-east-1",
                       aws_access_key_id="AKIDOPERATOR0001",
                       aws_secret_access_key="operator-secret-key-0001")
    url = sqs.get_queue_url(QueueName=q)["QueueUrl"]
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
    assert attrs["Attributes"]["ApproximateNumberOfMessages"] == "1", "the peek did not receive it"
    row.get_by_role("button", name="Purge " + q).click()
    expect(row.locator("td.visible")).to_have_text("0")


def test_a_new_role_turns_a_denied_publish_into_an_allowed_one(page):
    user, password, role = name("dev"), "dev-secret-1", name("telemetry")
    page.goto(HTTP + "/console#security")
    form = page.locator("#user-create")
    form.get_by_label("Username").fill(user)
    form.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Create user").click()
    expect(page.locator(f'tr[data-user="{user}"]')).to_be_visible()
    device = Device(name("device"), user, password)
    assert device.publish("telemetry/t1") == 0x87, "no role yet: the default access denies"
    page.locator("#role-create").get_by_label("Role name").fill(role)
    page.get_by_role("button", name="Create role").click()
    acl = page.locator("#acl-add")
    acl.get_by_label("Role").fill(role)
    acl.get_by_label("Type").select_option("publishClientSend")
    acl.get_by_label("Topic filter").fill("telemetry/#")
    page.get_by_role("button", name="Add entry").click()
    expect(page.locator(f'tr[data-role="{role}"]')).to_contain_text("allow publishClientSend telemetry/#")
    grant = page.locator("#role-grant")
    grant.get_by_label("Username").fill(user)
    grant.get_by_label("Role").fill(role)
    page.get_by_role("button", name="Add role").click()
    expect(page.locator(f'tr[data-user="{user}"]')).to_contain_text(role)
    assert device.publish("telemetry/t1") in (0, 0x10), "the role allows it on the next packet"
    assert device.publish("other/t1") == 0x87
    # An access key for the user: shown once, and it signs real boto3 calls as the user (whose
    # role says nothing of SQS: denied).
    page.locator("#key-create").get_by_label("For user").fill(user)
    page.get_by_role("button", name="Create access key").click()
    secret = page.locator("#key-secret")
    expect(secret).to_contain_text("Access key for " + user)
    key_id, key_secret = re.search(r": (AKIA\w+), secret (\S+) ", secret.inner_text()).groups()
    sqs = boto3.client("sqs", endpoint_url=HTTP, region_name="us-east-1",
                       aws_access_key_id=key_id, aws_secret_access_key=key_secret)
    with pytest.raises(Exception) as denied:
        sqs.create_queue(QueueName=name("not-mine"))
    assert "AccessDenied" in str(denied.value)
    page.get_by_role("button", name="Delete " + key_id).click()
    expect(page.locator(f'tr[data-key="{key_id}"]')).to_have_count(0)
    # Disabling the user from the console disconnects the device at once.
    page.get_by_role("button", name="Disable " + user).click()
    assert device.disconnected.wait(10)
    device.c.loop_stop()


def test_live_view_shows_messages_as_they_are_published(page):
    page.goto(HTTP + "/console#live")
    page.locator("#live-form").get_by_label("Topic filter").fill("live/#")
    page.get_by_role("button", name="Subscribe").click()
    expect(page.locator("#live-state")).to_have_text("Subscribed to live/#")
    d = Device(name("pub"), *OPERATOR)
    d.publish("live/room1", "21.5 degrees")
    expect(page.locator("#live-messages")).to_contain_text("live/room1 21.5 degrees")
    d.close()


def test_overview_screenshot_for_the_readme(page):
    """Taken last, with a queue holding messages and a load running for a few samples."""
    sqs = boto3.client("sqs", endpoint_url=HTTP, region_name="us-east-1",
                       aws_access_key_id="AKIDOPERATOR0001",
                       aws_secret_access_key="operator-secret-key-0001")
    url = sqs.create_queue(QueueName="orders")["QueueUrl"]
    for i in range(12):
        sqs.send_message(QueueUrl=url, MessageBody=f"order {i}")
    page.goto(HTTP + "/console#overview")
    load = Load()
    try:
        eventually("eight samples of the load", lambda: int(page.locator("#chart-in").get_attribute("data-samples") or 0) >= 8,
                   timeout=40)
        expect(page.locator("#ov-queues")).to_contain_text("orders")
        path = os.environ.get("OUTPOST_SCREENSHOT")
        if path:
            page.screenshot(path=path, full_page=True)
    finally:
        load.close()


def test_keyboard_labels_and_a_phone_screen(page):
    page.goto(HTTP + "/console#overview")
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    # Every form control has a label (screen readers, and get_by_label above).
    unlabeled = page.evaluate("""() => [...document.querySelectorAll('input, select')]
        .filter(e => e.labels.length === 0 && !e.getAttribute('aria-label')).map(e => e.id)""")
    assert unlabeled == []
    # The pages are reached with the keyboard alone.
    page.locator('.tabs a[href="#queues"]').focus()
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Queues")).to_be_visible()
    expect(page.locator('.tabs a[href="#queues"]')).to_have_attribute("aria-current", "page")
    # On a phone's width nothing but the tables' own scroll areas is wider than the screen.
    page.set_viewport_size({"width": 390, "height": 844})
    for p in ["overview", "security", "clients"]:
        page.goto(HTTP + "/console#" + p)
        expect(page.locator("#page-" + p)).to_be_visible()
        wide = page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
        assert wide <= 0, f"{p} is {wide}px wider than a phone's screen"
    page.set_viewport_size({"width": 1280, "height": 900})


def test_topic_tree_with_retained_messages(page):
    d = Device(name("ret"), *OPERATOR)
    d.c.publish("site/hall/temp", "19.5", qos=1, retain=True).wait_for_publish(10)
    d.c.publish("site/hall/door", "closed", qos=1, retain=True).wait_for_publish(10)
    d.close()
    page.goto(HTTP + "/console#topics")
    leaf = page.locator('li[data-topic="site/hall/temp"]')
    expect(leaf).to_contain_text("temp")
    leaf.get_by_role("button", name="Peek").click()
    expect(page.locator("#retained-view")).to_have_text("site/hall/temp\n19.5")
    leaf.get_by_role("button", name="Purge site/hall/temp").click()
    expect(page.locator('li[data-topic="site/hall/temp"]')).to_have_count(0)
    expect(page.locator('li[data-topic="site/hall/door"]')).to_be_visible()
