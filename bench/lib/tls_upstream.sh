# shellcheck shell=bash
# Shared by bench/run.sh and bench/upstream_soak.sh (sourced, not run): the
# encrypted upstream they put behind dnsgate (and dnsdist), all on loopback
# with a certificate made here:
#
#   tls_certs DIR                 a test CA and a server certificate for
#                                 TLS_NAME and 127.0.0.1 (ECDSA P-256)
#   unbound_prepare DIR CERTS DOT DOH KNOT_PORT
#                                 an unbound.conf serving DoT on DOT and DoH
#                                 (HTTP/2, /dns-query) on DOH with the
#                                 certificate of tls_certs CERTS, forwarding
#                                 to knotd, cache on: `unbound -d -c DIR/unbound.conf`
#   dnsdist_upstream_prepare DIR CERTS DOT DOH DO53 KNOT_PORT
#                                 the same served by dnsdist 1.7 (addTLSLocal,
#                                 addDOHLocal), no cache, in front of knotd:
#                                 `dnsdist --supervised --disable-syslog -C DIR/dnsdist-upstream.conf`
#   wait_for_dot PORT NAME CA     until the DoT server answers NAME (~10 s at most)
#   wait_for_doh PORT NAME CA     the same over DoH
#   gate_resolver PROTOCOL PORT CA
#                                 dnsgate's YAML lines for one resolver
#                                 (under `resolvers:`) of that protocol
#   dnsdist_backend PROTOCOL PORT CA
#                                 dnsdist's newServer{} line for the same
#                                 backend over DoT or DoH
#   doq_server_bin DNSGATE_BIN    the DoQ test server built beside
#                                 DNSGATE_BIN (tests/doq_server), or nothing
#   nodelay_shim DIR              builds DIR/nodelay.so (an LD_PRELOAD shim
#                                 that sets TCP_NODELAY on accepted sockets)
#                                 and prints its path; nothing without a C
#                                 compiler
#
# Why the shim: unbound 1.17 (Debian 12) sets TCP_NODELAY on its DoH
# sockets but not on its DoT ones (later unbound does: NLnetLabs/unbound
# pull request 1214, January 2025). Over one pipelined DoT connection, as dnsgate keeps,
# Nagle then holds each answer until the client's next segment acknowledges
# the previous one: an answer waits for the next query (p50 600 µs instead
# of 150 µs at 2,000 queries/s, two thirds of the throughput at full load,
# and fewer, fuller segments, so a lower CPU per query than a real DoT
# server would cost). dnsdist, with a connection per query in flight, is
# not affected. bench/run.sh preloads the shim into unbound (UNBOUND_NODELAY=0
# turns it off) and says so in the report.

TLS_NAME=dns.bench.test  # the name on the certificate, sent as SNI
DOH_PATH=/dns-query

# certtool's default curve (P-224) breaks OpenSSL peers: say P-256.
tls_certs() {
  local dir=$1
  mkdir -p "$dir"
  cat >"$dir/ca.tmpl" <<EOF
cn = "dnsgate bench CA"
ca
cert_signing_key
expiration_days = 30
EOF
  cat >"$dir/server.tmpl" <<EOF
cn = "$TLS_NAME"
dns_name = "$TLS_NAME"
ip_address = "127.0.0.1"
tls_www_server
signing_key
encryption_key
expiration_days = 30
EOF
  certtool --generate-privkey --key-type=ecdsa --curve=secp256r1 --no-text \
    --outfile "$dir/ca.key" 2>/dev/null
  certtool --generate-self-signed --load-privkey "$dir/ca.key" --template "$dir/ca.tmpl" \
    --no-text --outfile "$dir/ca.pem" 2>/dev/null
  certtool --generate-privkey --key-type=ecdsa --curve=secp256r1 --no-text \
    --outfile "$dir/server.key" 2>/dev/null
  certtool --generate-certificate --load-privkey "$dir/server.key" \
    --load-ca-certificate "$dir/ca.pem" --load-ca-privkey "$dir/ca.key" \
    --template "$dir/server.tmpl" --no-text --outfile "$dir/server.pem" 2>/dev/null
  [ -s "$dir/server.pem" ] || { echo "certtool made no certificate in $dir" >&2; return 1; }
}

# Unbound 1.17: one thread, cache on (after the first pass over the query
# file it answers from its cache and knotd is idle), `test.` taken out of
# its built-in local zones (RFC 6761 names are NXDOMAIN otherwise). HTTP/2
# streams per connection stay at unbound's default (100).
unbound_prepare() {
  local dir=$1 certs=$2 dot=$3 doh=$4 knot=$5
  mkdir -p "$dir"
  cat >"$dir/unbound.conf" <<EOF
server:
    username: ""
    chroot: ""
    directory: "$dir"
    pidfile: "$dir/unbound.pid"
    use-syslog: no
    logfile: "$dir/unbound.log"
    verbosity: 1
    num-threads: 1
    do-ip6: no
    interface: 127.0.0.1@$dot
    interface: 127.0.0.1@$doh
    tls-port: $dot
    https-port: $doh
    http-endpoint: "$DOH_PATH"
    http-notls-downstream: no
    tls-service-key: "$certs/server.key"
    tls-service-pem: "$certs/server.pem"
    do-not-query-localhost: no
    module-config: "iterator"
    local-zone: "test." nodefault
    access-control: 127.0.0.0/8 allow
    incoming-num-tcp: 100
    tcp-idle-timeout: 120000
    msg-cache-size: 16m
    rrset-cache-size: 32m
remote-control:
    control-enable: no
forward-zone:
    name: "."
    forward-addr: 127.0.0.1@$knot
EOF
}

# dnsdist 1.7 as the TLS upstream: out-of-order processing on its DoT
# listener (maxInFlight; 0, its default, answers one query per connection
# at a time), the backend forced up, no cache, no console, no polling.
dnsdist_upstream_prepare() {
  local dir=$1 certs=$2 dot=$3 doh=$4 do53=$5 knot=$6
  mkdir -p "$dir"
  cat >"$dir/dnsdist-upstream.conf" <<EOF
setSecurityPollSuffix("")
setLocal("127.0.0.1:$do53")
newServer({address="127.0.0.1:$knot", name="knotd"})
getServer(0):setUp()
addTLSLocal("127.0.0.1:$dot", "$certs/server.pem", "$certs/server.key", {maxInFlight=1000})
addDOHLocal("127.0.0.1:$doh", "$certs/server.pem", "$certs/server.key", "$DOH_PATH")
EOF
}

wait_for_dot() {
  local port=$1 name=$2 ca=$3
  for _ in $(seq 50); do
    kdig @127.0.0.1 -p "$port" +tls +tls-ca="$ca" +tls-hostname="$TLS_NAME" +time=1 +retry=0 \
      "$name" A >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  echo "no DoT answer on 127.0.0.1:$port" >&2
  return 1
}

wait_for_doh() {
  local port=$1 name=$2 ca=$3
  for _ in $(seq 50); do
    kdig @127.0.0.1 -p "$port" +https="$DOH_PATH" +tls-ca="$ca" +tls-hostname="$TLS_NAME" \
      +time=1 +retry=0 "$name" A >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  echo "no DoH answer on 127.0.0.1:$port" >&2
  return 1
}

gate_resolver() {
  local protocol=$1 port=$2 ca=$3
  case "$protocol" in
    dot | doq)
      echo "    - protocol: $protocol"
      echo "      address: 127.0.0.1:$port"
      echo "      tlsServerName: $TLS_NAME"
      echo "      caFile: $ca"
      ;;
    doh)
      echo "    - protocol: doh"
      echo "      url: https://$TLS_NAME:$port$DOH_PATH"
      echo "      address: 127.0.0.1:$port"
      echo "      caFile: $ca"
      ;;
    do53-udp | do53-tcp)
      echo "    - protocol: $protocol"
      echo "      address: 127.0.0.1:$port"
      ;;
    *) echo "gate_resolver: unknown protocol $protocol" >&2; return 1 ;;
  esac
}

# dnsdist 1.7's outgoing DoT/DoH (`newServer{tls=..., dohPath=...}`),
# certificate checked against the test CA for TLS_NAME. On DoT, maxInFlight
# lets it pipeline up to 100 queries on a connection, as dnsgate does
# (without it dnsdist opens a connection per query in flight: slower and
# more CPU). A UDP query for a DoT/DoH backend goes through dnsdist's TCP
# or DoH worker threads, all counted.
dnsdist_backend() {
  local protocol=$1 port=$2 ca=$3
  case "$protocol" in
    dot)
      echo "newServer({address=\"127.0.0.1:$port\", name=\"dot\", tls=\"openssl\"," \
        "subjectName=\"$TLS_NAME\", caStore=\"$ca\", validateCertificates=true, maxInFlight=100})"
      ;;
    doh)
      echo "newServer({address=\"127.0.0.1:$port\", name=\"doh\", tls=\"openssl\"," \
        "subjectName=\"$TLS_NAME\", caStore=\"$ca\", validateCertificates=true," \
        "dohPath=\"$DOH_PATH\"})"
      ;;
    *) echo "dnsdist_backend: unknown protocol $protocol" >&2; return 1 ;;
  esac
}

doq_server_bin() {
  local build_dir candidate
  build_dir=$(dirname "$1")
  for candidate in "${DOQ_SERVER:-}" "$build_dir/tests/doq_server/dnsgate-doq-test-server"; do
    if [ -n "$candidate" ] && [ -x "$candidate" ]; then
      echo "$candidate"
      return 0
    fi
  done
  return 0
}

nodelay_shim() {
  local dir=$1
  command -v cc >/dev/null 2>&1 || return 0
  mkdir -p "$dir"
  cat >"$dir/nodelay.c" <<'EOF'
/* LD_PRELOAD: TCP_NODELAY on every stream socket accept()ed or accept4()ed. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
static void nodelay(int fd) {
  int on = 1, type = 0;
  socklen_t len = sizeof type;
  if (fd >= 0 && getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) == 0 && type == SOCK_STREAM)
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
}
int accept4(int s, struct sockaddr *a, socklen_t *l, int f) {
  int (*real)(int, struct sockaddr *, socklen_t *, int) =
      (int (*)(int, struct sockaddr *, socklen_t *, int))dlsym(RTLD_NEXT, "accept4");
  int fd = real(s, a, l, f);
  nodelay(fd);
  return fd;
}
int accept(int s, struct sockaddr *a, socklen_t *l) {
  int (*real)(int, struct sockaddr *, socklen_t *) =
      (int (*)(int, struct sockaddr *, socklen_t *))dlsym(RTLD_NEXT, "accept");
  int fd = real(s, a, l);
  nodelay(fd);
  return fd;
}
EOF
  cc -shared -fPIC -O2 -o "$dir/nodelay.so" "$dir/nodelay.c" -ldl 2>"$dir/nodelay.err" &&
    echo "$dir/nodelay.so"
  return 0
}
