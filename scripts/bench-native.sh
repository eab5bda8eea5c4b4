#!/usr/bin/env bash
# Throughput between two processes on loopback: two `junction` processes, then two OTP
# nodes doing the same (the standing reference), in one run. Usage:
#   scripts/bench-native.sh [COUNT] [RUNS]
# Prints one table per side (median of RUNS) and the ratio.
set -euo pipefail
cd "$(dirname "$0")/.."
count=${1:-1000000}
runs=${2:-3}
swift build -c release --product junction >/dev/null
bin=.build/release/junction
export JUNCTION_COOKIE=bench-cookie
registrar_port=$((20000 + RANDOM % 20000))
config=$(mktemp --suffix=.yaml)
sed "s/port: 4499/port: $registrar_port/" Config/junction.yaml > "$config"

pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; rm -f "$config"; }
trap cleanup EXIT

"$bin" run --config "$config" --name bench-b@localhost --log-level warning &
pids+=($!)
# Wait for the node to register (its registrar port accepts connections).
for _ in $(seq 1 100); do (exec 3<>/dev/tcp/127.0.0.1/$registrar_port) 2>/dev/null && break; sleep 0.1; done

echo "## Junction: junction bench -> junction run"
for payload in small 1k; do
  "$bin" bench bench-b@localhost --config "$config" --count "$count" --runs "$runs" --payload "$payload" 2>/dev/null | tail -1
done | tee /tmp/junction-bench.txt

echo "## Erlang/OTP $(erl -noshell -eval 'io:format("~s", [erlang:system_info(otp_release)]), halt().') distribution: a -> b"
erl -name ref_b@127.0.0.1 -setcookie bench -noshell -eval '
  register(echo, spawn(fun Loop() -> receive {From, done} -> From ! {echo, done}, Loop(); _ -> Loop() end end)).' &
pids+=($!)
sleep 1
for payload in small 1k; do
erl -name ref_a@127.0.0.1 -setcookie bench -noshell -eval "
  N = $count, Runs = $runs, Payload = '$payload',
  Blob = binary:copy(<<90>>, 1024),
  Dest = {echo, 'ref_b@127.0.0.1'},
  true = net_kernel:connect_node('ref_b@127.0.0.1'),
  Once = fun(Count) ->
      T0 = erlang:monotonic_time(nanosecond),
      Msg = fun(I) -> case Payload of small -> {m, I}; _ -> {m, Blob} end end,
      lists:foreach(fun(I) -> Dest ! Msg(I) end, lists:seq(1, Count)),
      Dest ! {self(), done},
      receive {echo, done} -> ok end,
      Count / ((erlang:monotonic_time(nanosecond) - T0) / 1.0e9)
  end,
  Once(N div 10),
  Rates = lists:sort([Once(N) || _ <- lists:seq(1, Runs)]),
  io:format(\"| ~s | ~b | ~b | ~b | ~b | ~b |~n\", [Payload, N, Runs, round(lists:nth(Runs div 2 + 1, Rates)), round(hd(Rates)), round(lists:last(Rates))]),
  halt()."
done | tee /tmp/erlang-bench.txt

echo "## Ratio (Junction median / Erlang median)"
paste -d' ' <(awk -F'|' '{print $2, $5}' /tmp/junction-bench.txt) <(awk -F'|' '{print $5}' /tmp/erlang-bench.txt) |
  awk '{printf "| %s | %.2fx |\n", $1, $2 / $3}'
