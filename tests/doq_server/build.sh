#!/usr/bin/env bash
# Builds the DoQ test server (and its smoke-test client) offline with
# Debian's Go and Debian's quic-go:
#   tests/doq_server/build.sh OUTDIR
# gives OUTDIR/dnsgate-doq-test-server and OUTDIR/dnsgate-doq-test-client.
#
# Debian ships Go libraries as GOPATH sources under /usr/share/gocode, not as
# modules, and no module proxy is reachable: so GOPATH mode (GO111MODULE=off),
# with the build cache inside OUTDIR so that nothing is written elsewhere.
set -euo pipefail

if [ $# -ne 1 ]; then
  echo "usage: $0 OUTDIR" >&2
  exit 2
fi
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$1"
out=$(cd "$1" && pwd)

go=${GO:-$(command -v go || true)}
if [ -z "$go" ]; then
  echo "$0: no 'go' found: install golang-go (scripts/install-deps.sh)" >&2
  exit 1
fi
gocode=/usr/share/gocode
if [ ! -d "$gocode/src/github.com/lucas-clemente/quic-go" ]; then
  echo "$0: $gocode has no quic-go: install golang-github-lucas-clemente-quic-go-dev (scripts/install-deps.sh)" >&2
  exit 1
fi

# env -i keeps a developer's own Go settings (GOFLAGS, GOPATH, a go.work
# above the tree, GOPROXY) from changing what is built or reaching out.
run_go() {
  env -i PATH="$PATH" HOME="$out" \
    GO111MODULE=off GOPATH="$out/gopath:$gocode" GOCACHE="$out/gocache" \
    GOPROXY=off GOFLAGS= GOTOOLCHAIN=local CGO_ENABLED=0 \
    "$go" "$@"
}

cd "$here"
run_go build -trimpath -o "$out/dnsgate-doq-test-server" .
run_go build -trimpath -o "$out/dnsgate-doq-test-client" ./client
