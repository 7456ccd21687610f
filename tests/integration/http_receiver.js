#!/usr/bin/env node
// A CloudEvents HTTP receiver for the event delivery tests, built on the
// official SDK (npm `cloudevents`).
//
//   node http_receiver.js --out FILE [--port P] [--path /events]
//        [--fail503-seconds S] [--fail400-next N] [--close-next N]
//        [--close-seconds S] [--delay-ms MS] [--outage-status 503]
//
// Each POST to the path is parsed with HTTP.toEvent (batched mode for
// application/cloudevents-batch+json) and every event is validated (the raw
// object must carry specversion 1.0, id, source, type, and the SDK's
// validate() must pass). A valid batch is answered 200 and each of its events
// is appended to FILE as one JSON line, as it was sent. An invalid
// batch is answered 400 and recorded in FILE.errors, never in FILE.
//
// Faults (from the command line or POST /control with a JSON object of the
// same names in camelCase: fail503Seconds, fail400Next, closeNext,
// closeSeconds, delayMs, outageStatus), applied to the POSTs in this order:
//   closeNext / closeSeconds: read the request, then destroy the connection
//                             without an answer (the next N POSTs, or all
//                             POSTs for S seconds from now);
//   fail503Seconds:           answer 503 (Retry-After absent) for S seconds from now
//                             (outageStatus: another status instead, e.g. 429);
//   fail400Next:              answer 400 to the next N batches; their events go to
//                             FILE.rejected (one JSON line each), not to FILE;
//   delayMs:                  wait that long before answering (any answer).
// GET /stats returns the counters: posts, batches (accepted), events,
// answered503, answered400, closed, invalid, maxBatch, batchSizes (of the
// accepted batches, in order), contentTypes (of the batches that got past
// the faults).
// When ready, prints "listening PORT" on stdout.
"use strict";

const fs = require("fs");
const http = require("http");
const path = require("path");
const { HTTP, CloudEvent } = require(path.join(__dirname, "node_modules", "cloudevents"));

function parseArgs(argv) {
  const o = { port: 0, path: "/events", out: null, fail503Seconds: 0, fail400Next: 0, closeNext: 0,
    closeSeconds: 0, delayMs: 0, outageStatus: 503 };
  for (let i = 0; i < argv.length; i += 2) {
    const k = argv[i];
    const v = argv[i + 1];
    const name = k.replace(/^--/, "").replace(/-([a-z0-9])/g, (_, c) => c.toUpperCase());
    if (!(name in o)) {
      console.error(`http_receiver: unknown option ${k}`);
      process.exit(2);
    }
    o[name] = name === "path" || name === "out" ? v : Number(v);
  }
  if (!o.out) {
    console.error("http_receiver: --out FILE is required");
    process.exit(2);
  }
  return o;
}

const opts = parseArgs(process.argv.slice(2));
const faults = { fail503Until: 0, fail400Next: 0, closeNext: 0, closeUntil: 0, delayMs: 0, outageStatus: 503 };
function applyFaults(f) {
  const now = Date.now();
  if (f.fail503Seconds) faults.fail503Until = now + f.fail503Seconds * 1000;
  if (f.fail400Next !== undefined) faults.fail400Next = f.fail400Next;
  if (f.closeNext !== undefined) faults.closeNext = f.closeNext;
  if (f.closeSeconds) faults.closeUntil = now + f.closeSeconds * 1000;
  if (f.delayMs !== undefined) faults.delayMs = f.delayMs;
  if (f.outageStatus !== undefined) faults.outageStatus = f.outageStatus;
}
applyFaults(opts);

const stats = { posts: 0, batches: 0, events: 0, answered503: 0, answered400: 0, closed: 0, invalid: 0,
  maxBatch: 0, batchSizes: [], contentTypes: {} };
const out = fs.openSync(opts.out, "a");
const errors = fs.openSync(opts.out + ".errors", "a");
const rejected = fs.openSync(opts.out + ".rejected", "a");

const REQUIRED = ["specversion", "id", "source", "type"];

// The events of one batch as sent, each validated by the SDK; throws with the reason.
function parseBatch(headers, body) {
  const ctype = headers["content-type"] || "";
  if (!ctype.startsWith("application/cloudevents-batch+json")) {
    throw new Error(`content-type ${JSON.stringify(ctype)}, expected application/cloudevents-batch+json`);
  }
  const raw = JSON.parse(body);
  if (!Array.isArray(raw)) throw new Error("a batch must be a JSON array");
  raw.forEach((obj, i) => {
    for (const key of REQUIRED) {
      if (typeof obj[key] !== "string" || obj[key] === "") throw new Error(`event ${i}: "${key}" missing`);
    }
    if (obj.specversion !== "1.0") throw new Error(`event ${i}: specversion ${obj.specversion}`);
  });
  const events = HTTP.toEvent({ headers, body });
  const list = Array.isArray(events) ? events : [events];
  if (list.length !== raw.length) throw new Error(`SDK parsed ${list.length} events of ${raw.length}`);
  for (const ev of list) {
    if (!(ev instanceof CloudEvent)) throw new Error("SDK did not return a CloudEvent");
    ev.validate();  // throws ValidationError with .errors
  }
  return raw;  // as sent: the SDK would fill in a missing time
}

function answer(res, status, text) {
  const go = () => {
    res.writeHead(status, { "content-type": "text/plain" });
    res.end(text + "\n");
  };
  if (faults.delayMs > 0) setTimeout(go, faults.delayMs);
  else go();
}

function handlePost(req, res, body) {
  stats.posts += 1;
  const now = Date.now();
  if (faults.closeNext > 0 || now < faults.closeUntil) {
    if (faults.closeNext > 0) faults.closeNext -= 1;
    stats.closed += 1;
    req.socket.destroy();
    return;
  }
  if (now < faults.fail503Until) {
    stats.answered503 += 1;  // the outage answers, whatever their status
    answer(res, faults.outageStatus, "unavailable (scripted)");
    return;
  }
  const ctype = req.headers["content-type"] || "";
  stats.contentTypes[ctype] = (stats.contentTypes[ctype] || 0) + 1;
  let events;  // the raw objects, each accepted by the SDK
  try {
    events = parseBatch(req.headers, body);
  } catch (e) {
    stats.invalid += 1;
    const detail = e.errors ? ` ${JSON.stringify(e.errors)}` : "";
    fs.writeSync(errors, JSON.stringify({ error: `${e.message}${detail}`, body: body.slice(0, 2000) }) + "\n");
    answer(res, 400, `invalid batch: ${e.message}`);
    return;
  }
  if (faults.fail400Next > 0) {
    faults.fail400Next -= 1;
    stats.answered400 += 1;
    const lines = events.map((ev) => JSON.stringify({ id: ev.id, type: ev.type }) + "\n").join("");
    fs.writeSync(rejected, lines);
    answer(res, 400, "rejected (scripted)");
    return;
  }
  stats.batches += 1;
  stats.events += events.length;
  stats.maxBatch = Math.max(stats.maxBatch, events.length);
  stats.batchSizes.push(events.length);
  const lines = events.map((ev) => JSON.stringify(ev) + "\n").join("");
  fs.writeSync(out, lines);
  answer(res, 200, `accepted ${events.length}`);
}

const server = http.createServer((req, res) => {
  const chunks = [];
  req.on("data", (c) => chunks.push(c));
  req.on("end", () => {
    const body = Buffer.concat(chunks).toString("utf8");
    const url = req.url.split("?")[0];
    if (req.method === "GET" && url === "/stats") {
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify(stats));
    } else if (req.method === "POST" && url === "/control") {
      try {
        applyFaults(JSON.parse(body || "{}"));
        res.writeHead(200);
        res.end("ok\n");
      } catch (e) {
        res.writeHead(400);
        res.end(`bad control: ${e.message}\n`);
      }
    } else if (req.method === "POST" && url === opts.path) {
      handlePost(req, res, body);
    } else {
      res.writeHead(404);
      res.end("not here\n");
    }
  });
});
server.keepAliveTimeout = 30000;
server.listen(opts.port, "127.0.0.1", () => {
  console.log(`listening ${server.address().port}`);
});
process.on("SIGTERM", () => {
  server.close();
  process.exit(0);
});
