// Holds COUNT MQTT.js clients on one broker URL (mqtt:// or ws://), each subscribed at QoS 1 to a
// shared topic and to its own, as benches/src/bin/mqtt-many.rs does over TCP; prints "ready N"
// once all are subscribed, then holds them until stdin closes. Used by benches/many-websocket.sh
// to measure what an idle connection costs the broker over each transport, with the same client.
// usage: node benches/node/idle-clients.mjs URL COUNT
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
import path from "node:path";

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(path.join(here, "../../tests/interop/mqttjs/package.json"));
const mqtt = require("mqtt");

const [url, countArg] = process.argv.slice(2);
const count = Number(countArg);
const prefix = `idle-${process.pid}`;
const clients = [];
let ready = 0;
let failed = 0;

function open(i) {
  return new Promise((resolve) => {
    const c = mqtt.connect(url, {
      clientId: `${prefix}-${i}`,
      protocolVersion: 4,
      keepalive: 60,
      reconnectPeriod: 0,
      connectTimeout: 30_000,
      rejectUnauthorized: false,
    });
    c.once("connect", () => {
      c.subscribe([`${prefix}/all`, `${prefix}/c/${i}`], { qos: 1 }, (err) => {
        if (err) failed++;
        else ready++;
        resolve();
      });
    });
    c.once("error", () => {
      failed++;
      resolve();
    });
    clients.push(c);
  });
}

const inFlight = 50;
for (let i = 0; i < count; i += inFlight) {
  const batch = [];
  for (let j = i; j < Math.min(count, i + inFlight); j++) batch.push(open(j));
  await Promise.all(batch);
}
console.log(`ready ${ready} failed ${failed}`);
process.stdin.resume();
process.stdin.on("end", () => {
  for (const c of clients) c.end(true);
  process.exit(0);
});
