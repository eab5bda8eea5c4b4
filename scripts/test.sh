#!/usr/bin/env bash
# Runs Junction's whole test suite on a fresh Debian machine: installs the real peers the
# interop tests talk to (Erlang/OTP, etcd) and zlib's headers when they are missing, then
# builds and runs every test. An interop test whose peer is missing fails; none skips.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v erl >/dev/null 2>&1 || missing+=(erlang-nox)
command -v etcd >/dev/null 2>&1 || missing+=(etcd-server)
[ -f /usr/include/zlib.h ] || missing+=(zlib1g-dev)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing test peers: ${missing[*]}"
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq "${missing[@]}"
fi

swift build --build-tests
swift test --skip-build "$@"
# The config checker as users run it: every file in Config/ must pass.
swift package junction-config-check
