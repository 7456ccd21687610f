#!/usr/bin/env node
// JetStream chores for the integration tests, with the official NATS client
// (npm `nats`). The server list is one or more nats:// URLs, comma-separated.
//
//   node nats_tool.js SERVERS add-stream NAME SUBJECTS REPLICAS [DUP_WINDOW_MS]
//       creates (or updates to) a file-backed stream; SUBJECTS comma-separated;
//       the duplicate window defaults to the server's (2 min)
//   node nats_tool.js SERVERS set-subjects NAME SUBJECTS
//       changes the subjects of an existing stream
//   node nats_tool.js SERVERS info NAME
//       prints {"messages", "leader", "replicas", "subjects", "duplicateWindowMs"}
//   node nats_tool.js SERVERS count NAME [OUT_FILE]
//       reads every message of the stream with an ordered JetStream consumer
//       and prints {"messages", "distinctIds", "ids", "missingIdHeader",
//       "subjects"}: ids are the Nats-Msg-Id headers in stream order,
//       subjects maps each subject to its message count; with OUT_FILE each
//       message body is written there as one line (the event as published)
//   node nats_tool.js SERVERS publish SUBJECT COUNT ID_PREFIX
//       publishes COUNT small JSON events with Nats-Msg-Id ID_PREFIX-<n>,
//       waiting for each ack; prints {"acked", "duplicates"}
//
// Requests that JetStream cannot serve yet (no meta leader right after a
// cluster starts, a stream leader being elected) are retried for up to
// 20 s. Exit status 1 and one line on stderr on failure.
"use strict";

const fs = require("fs");
const path = require("path");
const { connect, headers, StringCodec, RetentionPolicy, StorageType, nanos } = require(
  path.join(__dirname, "node_modules", "nats"));

const sc = StringCodec();

function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms));
}

async function retrying(what, fn, seconds = 20) {
  const deadline = Date.now() + seconds * 1000;
  for (;;) {
    try {
      return await fn();
    } catch (e) {
      if (Date.now() > deadline) throw new Error(`${what}: ${e.message}`);
      await sleep(250);
    }
  }
}

async function addStream(nc, name, subjects, replicas, dupMs) {
  const jsm = await nc.jetstreamManager({ timeout: 5000 });
  const cfg = {
    name,
    subjects: subjects.split(","),
    num_replicas: Number(replicas),
    storage: StorageType.File,
    retention: RetentionPolicy.Limits,
  };
  if (dupMs) cfg.duplicate_window = nanos(Number(dupMs));
  const info = await retrying(`add-stream ${name}`, async () => {
    try {
      return await jsm.streams.add(cfg);
    } catch (e) {
      if (/already in use/.test(e.message)) return await jsm.streams.update(name, cfg);
      throw e;
    }
  });
  // wait until the stream has a leader that answers
  await retrying(`stream ${name} leader`, async () => {
    const i = await jsm.streams.info(name);
    if (Number(replicas) > 1 && !(i.cluster && i.cluster.leader)) throw new Error("no leader yet");
    return i;
  });
  return { created: info.config.name, replicas: info.config.num_replicas };
}

async function setSubjects(nc, name, subjects) {
  const jsm = await nc.jetstreamManager({ timeout: 5000 });
  const info = await retrying(`info ${name}`, () => jsm.streams.info(name));
  const cfg = { ...info.config, subjects: subjects.split(",") };
  const up = await retrying(`update ${name}`, () => jsm.streams.update(name, cfg));
  return { subjects: up.config.subjects };
}

async function streamInfo(nc, name) {
  const jsm = await nc.jetstreamManager({ timeout: 5000 });
  const i = await retrying(`info ${name}`, () => jsm.streams.info(name));
  return {
    messages: i.state.messages,
    leader: i.cluster ? i.cluster.leader || null : null,
    replicas: i.config.num_replicas,
    subjects: i.config.subjects,
    duplicateWindowMs: Math.round(i.config.duplicate_window / 1e6),
  };
}

async function count(nc, name, outFile) {
  const jsm = await nc.jetstreamManager({ timeout: 5000 });
  const js = nc.jetstream({ timeout: 5000 });
  const info = await retrying(`info ${name}`, () => jsm.streams.info(name));
  const total = info.state.messages;
  const ids = [];
  const lines = [];
  const subjects = {};
  let missing = 0;
  if (total > 0) {
    const consumer = await retrying(`consumer on ${name}`, () => js.consumers.get(name));
    const deadline = Date.now() + 60000;
    while (ids.length + missing < total) {
      if (Date.now() > deadline) throw new Error(`read ${ids.length + missing} of ${total} messages in 60 s`);
      const batch = await consumer.fetch({ max_messages: 1000, expires: 2000 });
      for await (const m of batch) {
        const id = m.headers ? m.headers.get("Nats-Msg-Id") : "";
        if (id) ids.push(id);
        else missing += 1;
        subjects[m.subject] = (subjects[m.subject] || 0) + 1;
        if (outFile) lines.push(sc.decode(m.data));
        if (ids.length + missing >= total) break;
      }
    }
  }
  if (outFile) fs.writeFileSync(outFile, lines.map((l) => l + "\n").join(""));
  return { messages: total, distinctIds: new Set(ids).size, ids, missingIdHeader: missing, subjects };
}

async function publish(nc, subject, n, prefix) {
  const js = nc.jetstream({ timeout: 5000 });
  let acked = 0;
  let duplicates = 0;
  for (let i = 0; i < Number(n); i++) {
    const h = headers();
    h.set("Nats-Msg-Id", `${prefix}-${i}`);
    const body = JSON.stringify({ specversion: "1.0", id: `${prefix}-${i}`, source: "nats_tool", type: "test" });
    const ack = await retrying(`publish ${i}`, () => js.publish(subject, sc.encode(body), { headers: h }), 10);
    acked += 1;
    if (ack.duplicate) duplicates += 1;
  }
  return { acked, duplicates };
}

async function main() {
  const [servers, cmd, ...args] = process.argv.slice(2);
  if (!servers || !cmd) {
    console.error("usage: nats_tool.js SERVERS add-stream|set-subjects|info|count|publish ...");
    process.exit(2);
  }
  const nc = await retrying("connect", () =>
    connect({ servers: servers.split(","), name: "nats_tool", timeout: 2000, maxReconnectAttempts: 20 }), 15);
  let out;
  try {
    switch (cmd) {
      case "add-stream":
        out = await addStream(nc, args[0], args[1], args[2] || "1", args[3]);
        break;
      case "set-subjects":
        out = await setSubjects(nc, args[0], args[1]);
        break;
      case "info":
        out = await streamInfo(nc, args[0]);
        break;
      case "count":
        out = await count(nc, args[0], args[1]);
        break;
      case "publish":
        out = await publish(nc, args[0], args[1], args[2]);
        break;
      default:
        throw new Error(`unknown command ${cmd}`);
    }
  } finally {
    await nc.close();
  }
  console.log(JSON.stringify(out));
}

main().catch((e) => {
  console.error(`nats_tool: ${e.message}`);
  process.exit(1);
});
