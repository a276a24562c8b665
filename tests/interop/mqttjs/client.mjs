// MQTT.js against a running Outpost: for each URL given (mqtt://host:port, ws://host:port/mqtt) and
// each protocol version, subscribe, publish at QoS 0/1/2 with MQTT 5 properties, receive them back,
// check a retained message and a last will. Prints one line per check; exits non-zero on failure.
import mqtt from "mqtt";

const urls = process.argv.slice(2);
const deadline = (ms, what) =>
  new Promise((_, reject) => setTimeout(() => reject(new Error(`timed out: ${what}`)), ms));

function connect(url, opts) {
  return Promise.race([
    new Promise((resolve, reject) => {
      const c = mqtt.connect(url, { reconnectPeriod: 0, connectTimeout: 5000, ...opts });
      c.once("connect", () => resolve(c));
      c.once("error", reject);
    }),
    deadline(10000, `connect ${url}`),
  ]);
}

async function roundTrip(url, protocolVersion) {
  const tag = `${url} v${protocolVersion === 5 ? 5 : 3.1}`;
  const topic = `mqttjs/${protocolVersion}/${Math.random().toString(16).slice(2)}`;
  const c = await connect(url, { protocolVersion, clientId: `mqttjs-${protocolVersion}-${Date.now()}` });
  const got = [];
  c.on("message", (t, payload, packet) => got.push({ t, payload: payload.toString(), packet }));
  await c.subscribeAsync(`${topic}/#`, { qos: 2 });
  const props = protocolVersion === 5 ? { properties: { userProperties: { origin: "mqttjs" }, contentType: "text/plain" } } : {};
  for (const qos of [0, 1, 2]) {
    await c.publishAsync(`${topic}/q${qos}`, `hello ${qos}`, { qos, ...props });
  }
  await Promise.race([
    new Promise((resolve) => {
      const check = () => (got.length >= 3 ? resolve() : setTimeout(check, 20));
      check();
    }),
    deadline(10000, `${tag}: three messages back`),
  ]);
  const payloads = got.map((m) => m.payload).sort();
  if (JSON.stringify(payloads) !== JSON.stringify(["hello 0", "hello 1", "hello 2"])) {
    throw new Error(`${tag}: got ${JSON.stringify(payloads)}`);
  }
  if (protocolVersion === 5) {
    const p = got[0].packet.properties || {};
    if (!p.userProperties || p.userProperties.origin !== "mqttjs" || p.contentType !== "text/plain") {
      throw new Error(`${tag}: properties lost: ${JSON.stringify(p)}`);
    }
  }
  // Retained: set, then a new subscription gets it with the retain flag.
  await c.publishAsync(`${topic}/state`, "on", { qos: 1, retain: true });
  const r = await connect(url, { protocolVersion, clientId: `mqttjs-r-${Date.now()}` });
  const retained = new Promise((resolve) => r.on("message", (t, payload, packet) => resolve(packet)));
  await r.subscribeAsync(`${topic}/state`, { qos: 1 });
  const packet = await Promise.race([retained, deadline(10000, `${tag}: retained message`)]);
  if (!packet.retain || packet.payload.toString() !== "on") throw new Error(`${tag}: retained message wrong`);
  // Last will: a client that vanishes without DISCONNECT.
  const will = new Promise((resolve) => r.on("message", (t, payload) => t.endsWith("/will") && resolve(payload.toString())));
  await r.subscribeAsync(`${topic}/will`, { qos: 1 });
  const mortal = await connect(url, {
    protocolVersion,
    clientId: `mqttjs-w-${Date.now()}`,
    will: { topic: `${topic}/will`, payload: "gone", qos: 1, retain: false },
  });
  mortal.stream.destroy();
  const w = await Promise.race([will, deadline(10000, `${tag}: last will`)]);
  if (w !== "gone") throw new Error(`${tag}: will payload ${w}`);
  // Device Shadow: an update over this transport is answered on update/accepted.
  const thing = `mqttjs-${protocolVersion}-${Date.now()}`;
  const accepted = new Promise((resolve) => r.on("message", (t, payload) => t.endsWith("/update/accepted") && resolve(JSON.parse(payload.toString()))));
  await r.subscribeAsync(`$aws/things/${thing}/shadow/update/accepted`, { qos: 1 });
  await c.publishAsync(`$aws/things/${thing}/shadow/update`, JSON.stringify({ state: { reported: { on: true } }, clientToken: "js" }), { qos: 1 });
  const a = await Promise.race([accepted, deadline(10000, `${tag}: shadow update/accepted`)]);
  if (a.version !== 1 || a.clientToken !== "js" || a.state.reported.on !== true) throw new Error(`${tag}: shadow answer ${JSON.stringify(a)}`);
  await c.endAsync();
  await r.endAsync();
  console.log(`ok ${tag}`);
}

try {
  for (const url of urls) {
    for (const v of [4, 5]) await roundTrip(url, v);
  }
  process.exit(0);
} catch (e) {
  console.error(`FAIL ${e.message}`);
  process.exit(1);
}
