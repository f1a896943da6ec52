// An independent Sparkplug B edge node for the integration tests, on the npm package
// sparkplug-client (Eclipse Tahu's JavaScript client; its payloads come from sparkplug-payload).
//
//   node edge_node.js URL GROUP NODE DEVICE...
//
// Reads commands from stdin, one per line; writes events to stdout as JSON lines:
//   birth                NBIRTH (metric Node/Uptime, alias 1) and a DBIRTH per device
//                        (Motor/RPM Double alias 10*k, Motor/On Boolean alias 10*k+1, k = 1, 2, …)
//   data N QOS [T0]      N rounds of DDATA by alias only, every device: RPM = 1000*k + i,
//                        On = i odd; metric timestamps T0 + i*1000 ms (default: now)
//   skip                 skip one seq number (a message the host never gets)
//   ndeath               publish NDEATH with the current bdSeq, as the Will would
//   exit                 disconnect (no NDEATH) and exit
// Events: {"event":"birth"} when connected (the client asks for births), {"event":"ok","cmd":…}
// after each command's messages were handed to MQTT, {"event":"ncmd","metrics":[…]} for a
// command from a host (e.g. Node Control/Rebirth).
//
// The client publishes at QoS 0; `data … 1` publishes DDATA at QoS 1 through the client's own
// MQTT connection (the client has no QoS option), with the seq the client assigns.
"use strict";
const sparkplug = require("sparkplug-client");
const readline = require("readline");

const [url, group, node, ...devices] = process.argv.slice(2);
const out = (o) => process.stdout.write(JSON.stringify(o) + "\n");

const client = sparkplug.newClient({
  serverUrl: url,
  username: "",
  password: "",
  groupId: group,
  edgeNode: node,
  clientId: `edge-${node}-${process.pid}`,
  version: "spBv1.0",
  keepalive: 5,
});
client.on("error", (e) => out({ event: "error", message: String(e) }));
client.on("birth", () => out({ event: "birth" }));
client.on("ncmd", (payload) =>
  out({ event: "ncmd", metrics: payload.metrics.map((m) => ({ name: m.name, value: m.value })) }));

function publishQos(qos, fn) {
  if (qos === 0) return fn();
  const mqttClient = client.client;
  const publish = mqttClient.publish;
  mqttClient.publish = (topic, message, opts, cb) => publish.call(mqttClient, topic, message, { qos }, cb);
  try {
    fn();
  } finally {
    mqttClient.publish = publish;
  }
}

const births = () => {
  client.publishNodeBirth({
    timestamp: Date.now(),
    metrics: [{ name: "Node/Uptime", alias: 1, type: "Int64", value: 1 }],
  });
  devices.forEach((d, i) => {
    const k = i + 1;
    client.publishDeviceBirth(d, {
      timestamp: Date.now(),
      metrics: [
        { name: "Motor/RPM", alias: 10 * k, type: "Double", value: 0 },
        { name: "Motor/On", alias: 10 * k + 1, type: "Boolean", value: false },
      ],
    });
  });
};

const rl = readline.createInterface({ input: process.stdin });
rl.on("line", (line) => {
  const [cmd, ...args] = line.trim().split(/\s+/);
  if (cmd === "birth") {
    births();
  } else if (cmd === "data") {
    const n = Number(args[0]), qos = Number(args[1] || 0);
    const t0 = args[2] ? Number(args[2]) : Date.now();
    publishQos(qos, () => {
      for (let i = 0; i < n; i++) {
        devices.forEach((d, j) => {
          const k = j + 1;
          client.publishDeviceData(d, {
            timestamp: t0 + i * 1000,
            metrics: [
              { alias: 10 * k, type: "Double", value: 1000 * k + i, timestamp: t0 + i * 1000 },
              { alias: 10 * k + 1, type: "Boolean", value: i % 2 === 1, timestamp: t0 + i * 1000 },
            ],
          });
        });
      }
    });
  } else if (cmd === "skip") {
    client.incrementSeqNum();
  } else if (cmd === "ndeath") {
    client.publishNDeath(client.client);
  } else if (cmd === "exit") {
    client.client.end(false, {}, () => process.exit(0));
    return;
  }
  out({ event: "ok", cmd });
});
