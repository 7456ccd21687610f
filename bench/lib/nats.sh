# shellcheck shell=bash disable=SC2034,SC2154  # sets and uses the caller's variables
# Shared by the bench scripts (sourced, not run): nats-server with JetStream
# on loopback (one server, or a three-node cluster), and a small JetStream
# tool on the official `nats` npm client (the copy the integration tests
# install under tests/integration/node_modules).
#
# The caller provides: $work (a scratch dir), the array pids (every process
# started, stopped by PID at exit) and free_port (prints a free loopback
# TCP port).

NATS_SERVER=${NATS_SERVER:-/usr/sbin/nats-server}

# nats_write_tool: writes $work/nats_bench.js
#   node nats_bench.js SERVERS add NAME SUBJECT REPLICAS   stream (file, limits)
#   node nats_bench.js SERVERS leader NAME                 {"leader"}
#   node nats_bench.js SERVERS wait NAME WANT SECONDS      until WANT messages
#   node nats_bench.js SERVERS count NAME                  {"messages","read","distinctIds","missingId"}
nats_write_tool() {
  cat >"$work/nats_bench.js" <<'JS'
"use strict";
const path = require("path");
const { connect, StorageType, RetentionPolicy } = require(path.join(process.env.NATS_NODE_MODULES, "nats"));
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
async function retrying(what, fn, seconds = 30) {
  const deadline = Date.now() + seconds * 1000;
  for (;;) {
    try { return await fn(); } catch (e) {
      if (Date.now() > deadline) throw new Error(`${what}: ${e.message}`);
      await sleep(250);
    }
  }
}
async function main() {
  const [servers, cmd, name, a1, a2] = process.argv.slice(2);
  const nc = await retrying("connect", () =>
    connect({ servers: servers.split(","), name: "bench", timeout: 3000, maxReconnectAttempts: 60 }));
  const jsm = await nc.jetstreamManager({ timeout: 10000 });
  let out;
  if (cmd === "add") {
    const cfg = { name, subjects: [a1], num_replicas: Number(a2), storage: StorageType.File,
                  retention: RetentionPolicy.Limits };
    await retrying(`add ${name}`, () => jsm.streams.add(cfg));
    const i = await retrying(`leader of ${name}`, async () => {
      const i = await jsm.streams.info(name);
      if (Number(a2) > 1 && !(i.cluster && i.cluster.leader)) throw new Error("no leader yet");
      return i;
    });
    out = { created: name, replicas: i.config.num_replicas, leader: i.cluster ? i.cluster.leader : null };
  } else if (cmd === "leader") {
    const i = await retrying(`info ${name}`, () => jsm.streams.info(name));
    out = { leader: i.cluster ? i.cluster.leader || null : null };
  } else if (cmd === "wait") {
    const want = Number(a1), deadline = Date.now() + Number(a2) * 1000, t0 = Date.now();
    let got = -1;
    while (Date.now() < deadline) {
      try { got = (await jsm.streams.info(name)).state.messages; } catch (e) { /* leader moving */ }
      if (got >= want) break;
      await sleep(500);
    }
    out = { messages: got, want, waitedMs: Date.now() - t0 };
  } else if (cmd === "count") {
    const js = nc.jetstream({ timeout: 10000 });
    const total = (await retrying(`info ${name}`, () => jsm.streams.info(name))).state.messages;
    const ids = new Set();
    let read = 0, missing = 0;
    const deadline = Date.now() + 600000;
    if (total > 0) {
      const consumer = await retrying(`consumer on ${name}`, () => js.consumers.get(name));
      while (read < total) {
        if (Date.now() > deadline) throw new Error(`read ${read} of ${total} in 600 s`);
        const batch = await consumer.fetch({ max_messages: 10000, expires: 3000 });
        for await (const m of batch) {
          const id = m.headers ? m.headers.get("Nats-Msg-Id") : "";
          if (id) ids.add(id); else missing += 1;
          read += 1;
          if (read >= total) break;
        }
      }
    }
    out = { messages: total, read, distinctIds: ids.size, missingId: missing };
  } else {
    throw new Error(`unknown command ${cmd}`);
  }
  await nc.close();
  console.log(JSON.stringify(out));
}
main().catch((e) => { console.error(`nats_bench: ${e.message}`); process.exit(1); });
JS
}

# nats_js SERVERS ARGS...: runs the tool, bounded to 15 minutes
nats_js() {
  NATS_NODE_MODULES="$NATS_NODE_MODULES" timeout 900 node "$work/nats_bench.js" "$@"
}

# nats_single DIR: one server with JetStream, `-js -sd DIR/store`; sets
# nats_port, nats_mon, nats_url, nats_cmd (to restart it)
nats_single() {
  local dir=$1
  mkdir -p "$dir/store"
  nats_port=$(free_port)
  nats_mon=$(free_port)
  nats_url="nats://127.0.0.1:$nats_port"
  nats_cmd=("$NATS_SERVER" -js -sd "$dir/store" -a 127.0.0.1 -p "$nats_port" -m "$nats_mon" -n n1)
}

# nats_cluster DIR: three config files DIR/n{1,2,3}/nats.conf forming one
# JetStream cluster; sets ncl_port[], ncl_mon[], ncl_conf[], ncl_urls
nats_cluster() {
  local dir=$1 i j routes
  ncl_port=() ncl_mon=() ncl_route=() ncl_conf=()
  for i in 0 1 2; do
    ncl_port+=("$(free_port)") ncl_mon+=("$(free_port)") ncl_route+=("$(free_port)")
  done
  for i in 0 1 2; do
    mkdir -p "$dir/n$((i + 1))/store"
    routes=""
    for j in 0 1 2; do
      [ "$i" = "$j" ] || routes+="${routes:+, }nats-route://127.0.0.1:${ncl_route[j]}"
    done
    ncl_conf+=("$dir/n$((i + 1))/nats.conf")
    cat >"${ncl_conf[i]}" <<CONF
server_name: n$((i + 1))
listen: 127.0.0.1:${ncl_port[i]}
http: 127.0.0.1:${ncl_mon[i]}
jetstream {
  store_dir: "$dir/n$((i + 1))/store"
  max_memory_store: 64MB
  max_file_store: 8GB
}
cluster {
  name: bench
  listen: 127.0.0.1:${ncl_route[i]}
  routes: [$routes]
}
CONF
  done
  ncl_urls="nats://127.0.0.1:${ncl_port[0]},nats://127.0.0.1:${ncl_port[1]},nats://127.0.0.1:${ncl_port[2]}"
}

# nats_ready MONITOR_PORT PID: until /healthz answers (JetStream up), about 30 s
nats_ready() {
  for _ in $(seq 300); do
    kill -0 "$2" 2>/dev/null || { echo "nats-server $2 exited" >&2; return 1; }
    curl -fs -m 1 "http://127.0.0.1:$1/healthz" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "nats-server on monitor port $1 not ready" >&2
  return 1
}
