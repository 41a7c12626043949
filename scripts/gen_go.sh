#!/usr/bin/env bash
# Generate the Go stubs from protos/ into client/go/ (committed):
#   scripts/gen_go.sh           regenerate client/go/modelregistry/v1/*.pb.go
#   scripts/gen_go.sh --check   regenerate into a temporary directory and exit 1
#                               if the committed stubs differ
# Needs protoc, protoc-gen-go and protoc-gen-go-grpc on PATH (Debian:
# protobuf-compiler libprotobuf-dev protoc-gen-go protoc-gen-go-grpc). The
# output lands at each proto's path under client/go/, which is where its
# `go_package` (github.com/modelreg/modelreg/client/go/...) points.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PROTO_ROOT="$ROOT/protos"
OUT="$ROOT/client/go"
STUBS="modelregistry/v1"

check=0
case "${1:-}" in
  "") ;;
  --check) check=1 ;;
  *)
    echo "usage: scripts/gen_go.sh [--check]" >&2
    exit 2
    ;;
esac

for tool in protoc protoc-gen-go protoc-gen-go-grpc; do
  if ! command -v "$tool" >/dev/null; then
    echo "gen_go.sh: $tool not found (apt-get install protobuf-compiler protoc-gen-go protoc-gen-go-grpc)" >&2
    exit 1
  fi
done

# The well-known types (google/protobuf/*.proto) come with libprotobuf-dev.
INCLUDE=/usr/include
if [ ! -f "$INCLUDE/google/protobuf/timestamp.proto" ]; then
  echo "gen_go.sh: $INCLUDE/google/protobuf/timestamp.proto not found (apt-get install libprotobuf-dev)" >&2
  exit 1
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

cd "$PROTO_ROOT"
mapfile -t protos < <(find "$STUBS" -name '*.proto' | LC_ALL=C sort)
protoc -I. -I"$INCLUDE" \
  --go_out="$tmp" --go_opt=paths=source_relative \
  --go-grpc_out="$tmp" --go-grpc_opt=paths=source_relative \
  "${protos[@]}"

if [ "$check" = 1 ]; then
  if ! changes="$(diff -r "$tmp/$STUBS" "$OUT/$STUBS" 2>&1)"; then
    echo "stale Go stubs in client/go/$STUBS: run scripts/gen_go.sh" >&2
    printf '%s\n' "$changes" | head -40 >&2
    exit 1
  fi
  exit 0
fi

mkdir -p "$OUT/$STUBS"
rm -f "$OUT/$STUBS"/*.pb.go
cp "$tmp/$STUBS"/*.pb.go "$OUT/$STUBS/"
