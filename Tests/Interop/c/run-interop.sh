#!/usr/bin/env bash
# Runs the C interop client (qwcall, qwvectors) against a running Quizwire server.
#
#   run-interop.sh [--valgrind | --asan] [--only REGEX] HOST:PORT
#
# HOST:PORT is the server's framed-wire address. Builds with make first (build/, or build-asan/
# with --asan). --valgrind runs every client process under
#   valgrind --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite,indirect,possible
# (99, not 1: exit code 1 is the CANCELLED status the cancel case expects). Prints one line per
# case ("ok NAME" / "FAIL NAME: why", with the client's output on failure) and
# "N passed, M failed" last; exits 1 if anything failed.
set -u
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VECTORS="$(cd "$HERE/../../FramedWireTests/Vectors" && pwd)"
MODE=plain
ONLY=""
ADDR=""
while [ $# -gt 0 ]; do
  case "$1" in
    --valgrind) MODE=valgrind ;;
    --asan) MODE=asan ;;
    --only) shift; ONLY="$1" ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) ADDR="$1" ;;
  esac
  shift
done
if [ -z "$ADDR" ]; then
  echo "usage: run-interop.sh [--valgrind | --asan] [--only REGEX] HOST:PORT" >&2
  exit 2
fi

BUILD="$HERE/build"
WRAP=()
case "$MODE" in
  asan)
    BUILD="$HERE/build-asan"
    make -s -C "$HERE" asan >&2 || { echo "build failed"; echo "0 passed, 1 failed"; exit 1; }
    export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:exitcode=98"
    export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
    ;;
  valgrind)
    make -s -C "$HERE" all >&2 || { echo "build failed"; echo "0 passed, 1 failed"; exit 1; }
    command -v valgrind >/dev/null || { echo "valgrind not found"; echo "0 passed, 1 failed"; exit 1; }
    WRAP=(valgrind -q --error-exitcode=99 --leak-check=full
          --errors-for-leak-kinds=definite,indirect,possible --track-fds=no)
    ;;
  *)
    make -s -C "$HERE" all >&2 || { echo "build failed"; echo "0 passed, 1 failed"; exit 1; }
    ;;
esac
QWCALL="$BUILD/qwcall"
QWVECTORS="$BUILD/qwvectors"

PASSED=0
FAILED=0
OUT="$(mktemp)"
trap 'rm -f "$OUT"' EXIT

# case NAME EXPECTED_EXIT(S, "|"-separated) "qwcall args" PATTERN... (grep -E, each must match
# a line of the output; a pattern starting with "!" must match no line)
case_() {
  local name="$1" want="$2" args="$3"
  shift 3
  if [ -n "$ONLY" ] && ! [[ "$name" =~ $ONLY ]]; then return; fi
  local start end rc why=""
  start=$(date +%s%N)
  # shellcheck disable=SC2086
  "${WRAP[@]}" "$QWCALL" "$ADDR" $args >"$OUT" 2>&1
  rc=$?
  end=$(date +%s%N)
  if ! [[ "|$want|" == *"|$rc|"* ]]; then why="exit $rc, want $want"; fi
  for pat in "$@"; do
    if [ "${pat:0:1}" = "!" ]; then
      if grep -Eq -- "${pat:1}" "$OUT"; then why="${why:+$why; }unexpected line /${pat:1}/"; fi
    else
      if ! grep -Eq -- "$pat" "$OUT"; then why="${why:+$why; }missing /$pat/"; fi
    fi
  done
  local ms=$(( (end - start) / 1000000 ))
  if [ -z "$why" ]; then
    PASSED=$((PASSED + 1))
    echo "ok $name (${ms} ms) $(grep -E '^status ' "$OUT" | tail -1)"
  else
    FAILED=$((FAILED + 1))
    echo "FAIL $name (${ms} ms): $why"
    echo "  \$ qwcall $ADDR $args"
    grep -v '^message ' "$OUT" | head -40 | sed 's/^/  | /'
    local nmsg
    nmsg=$(grep -c '^message ' "$OUT")
    [ "$nmsg" -gt 0 ] && echo "  | ($nmsg message lines not shown)"
  fi
}

E=bench.v1.EchoService
NOCHECK='!^check-failed'

# --- calls ---------------------------------------------------------------------------------
case_ unary 0 "$E/Unary --payload hello --ping --metadata x-request-id=r1 --metadata x-trace-bin=0102ff" \
  '^ping ok' '^call stream=1$' '^headers encoding=identity' \
  '^message index=0 payload_len=5 payload_hex=68656c6c6f compressed=0' '^status 0 ?$' '^status_source trailers$' "$NOCHECK"
case_ unary-consecutive-ids 0 "$E/Unary --calls 3" \
  '^call stream=1$' '^call stream=3$' '^call stream=5$' "$NOCHECK"
case_ server-stream 0 "$E/ServerStream --payload x --count 10" \
  '^message index=0 payload_len=1 payload_hex=78' '^message index=9 payload_len=1 payload_hex=78' '^status 0 ?$' "$NOCHECK"
case_ client-stream 0 "$E/ClientStream --messages 4 --separate-eos" \
  '^message index=4 payload_len=7 payload_hex=68656c6c6f2333' '^status 0 ?$' "$NOCHECK"
case_ client-stream-no-messages 0 "$E/ClientStream --messages 0" \
  '^message index=0 payload_len=0 ' '^status 0 ?$' "$NOCHECK"
case_ bidi 0 "$E/Bidi --messages 5 --payload ping" \
  '^message index=0 payload_len=6 payload_hex=70696e672330' '^message index=4 payload_len=6 payload_hex=70696e672334' \
  '^frames stream=1 sent=6 ' '^status 0 ?$' "$NOCHECK"
case_ health 0 "grpc.health.v1.Health/Check" '^health status=1 SERVING$' '^status 0 ?$' "$NOCHECK"
case_ health-unknown-service 5 "grpc.health.v1.Health/Check --service no.such.Service" \
  '^status 5 unknown service' '^status_source trailers$' '!^health status'
case_ unknown-method 12 "$E/Nope" '^status 12 ' '^status_source trailers$'

# --- compression ----------------------------------------------------------------------------
case_ gzip 0 "$E/Unary --payload-size 4096 --gzip" \
  '^headers encoding=gzip' '^message index=0 payload_len=4096 .* compressed=1 ' '^status 0 ?$' "$NOCHECK"
case_ deflate 0 "$E/Unary --payload-size 4096 --deflate" \
  '^headers encoding=deflate' '^message index=0 payload_len=4096 .* compressed=1 ' '^status 0 ?$' "$NOCHECK"
case_ gzip-bidi 0 "$E/Bidi --messages 3 --payload-size 2000 --gzip" \
  '^headers encoding=gzip' '^message index=2 payload_len=2000 .* compressed=1 ' '^status 0 ?$' "$NOCHECK"

# --- messages larger than a frame / than a window ---------------------------------------------
case_ large-message-200000 0 "$E/Unary --payload-size 200000" \
  '^message index=0 payload_len=200000 .* compressed=0 wire_len=200004 fragments=[4-9]' \
  '^frames stream=1 sent=5 sent_more=3 recv=[4-9] recv_more=[3-9]' '^status 0 ?$' "$NOCHECK"
case_ large-message-1000000 0 "$E/Unary --payload-size 1000000" \
  '^message index=0 payload_len=1000000 ' \
  '^frames stream=1 sent=[0-9]+ sent_more=(1[5-9]|[2-9][0-9]|[0-9]{3,}) recv=[0-9]+ recv_more=(1[5-9]|[2-9][0-9]|[0-9]{3,}) window_updates_sent=[1-9][0-9]* window_updates_recv=[1-9]' \
  '^status 0 ?$' "$NOCHECK"
case_ server-stream-flow-control 0 "$E/ServerStream --count 600 --payload-size 1024 --summary --stream-window 65536" \
  '^messages received=600$' '^status 0 ?$' "$NOCHECK"

# --- deadlines --------------------------------------------------------------------------------
# The client's own timer starts when HEADERS is written, slightly before the server's (which
# starts on receipt), so it normally fires first: status 4 from the client, then RST(CANCEL).
case_ deadline 4 "$E/ServerStream --count 5000000 --payload-size 1024 --timeout-ms 50 --summary --followup" \
  '^status 4 ' '^status_source (client|trailers|rst)$' '^followup status 0 ?$'
# The client's timer 10 s late: the server's TRAILERS(DEADLINE_EXCEEDED) is observed. Windows large
# enough that no response message is ever split by flow control.
case_ deadline-server 4 "$E/ServerStream --count 5000000 --payload-size 1024 --timeout-ms 50 --timer-grace-ms 10000 --summary --stream-window 33554432 --conn-window 67108864 --followup" \
  '^status 4 ' '^status_source trailers$' '^followup status 0 ?$'
# Same with default windows: the deadline usually fires while a response message is split
# waiting for credit, where the server must send RST(CANCEL), not TRAILERS (§4.6, §13).
case_ deadline-server-mid-message 4 "$E/ServerStream --count 5000000 --payload-size 1024 --timeout-ms 50 --timer-grace-ms 10000 --summary --followup" \
  '^status 4 ' '^status_source (trailers|rst)$' '^followup status 0 ?$'

# --- cancel -----------------------------------------------------------------------------------
case_ cancel 1 "$E/ServerStream --count 1000000 --cancel-after 5 --stream-window 65536" \
  '^cancelled after=5$' '^status 1 cancelled by the client$' '^followup ping ok' '^followup stream=3 echo_ok=1$' \
  '^followup status 0 ?$' "$NOCHECK"

# --- handshake --------------------------------------------------------------------------------
case_ version-rejection 101 "$E/Unary --version 2" \
  '^connect failed$' '^status 14 server rejected the connection: GOAWAY\(UNSUPPORTED_VERSION\): .*supported versions: 1$'

# --- vectors ----------------------------------------------------------------------------------
if [ -z "$ONLY" ] || [[ vectors =~ $ONLY ]]; then
  start=$(date +%s%N)
  "${WRAP[@]}" "$QWVECTORS" "$VECTORS" >"$OUT" 2>&1
  rc=$?
  ms=$(( ($(date +%s%N) - start) / 1000000 ))
  summary=$(tail -1 "$OUT")
  if [ $rc -eq 0 ] && [[ "$summary" =~ ^[0-9]+\ passed,\ 0\ failed$ ]]; then
    PASSED=$((PASSED + 1))
    echo "ok vectors (${ms} ms) $summary"
  else
    FAILED=$((FAILED + 1))
    echo "FAIL vectors (${ms} ms): exit $rc: $summary"
    grep -v '^ok ' "$OUT" | head -40 | sed 's/^/  | /'
  fi
fi

echo "$PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
