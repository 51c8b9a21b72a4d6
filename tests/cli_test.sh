#!/usr/bin/env bash
# Command-line contract: documented exit codes and clear messages.
set -u
clq="$1"
fail=0
check() {  # name expected_rc command...
  local name=$1 want=$2; shift 2
  out=$("$@" 2>&1); rc=$?
  if [ "$rc" != "$want" ]; then echo "FAIL $name: exit $rc, want $want"; echo "$out" | head -20; fail=1
  else echo "ok   $name (exit $rc)"; fi
}
check "devices lists" 0 "$clq" devices
check "caps prints matrix" 0 "$clq" caps
"$clq" caps | grep -q "NV-sm89+" || { echo "FAIL caps has no NV-sm89+ column"; fail=1; }
check "caps json" 0 "$clq" caps --json
out=$(CLQ_DEVICE=no-such-device "$clq" devices 2>&1); rc=$?
if [ $rc -ne 3 ] || ! echo "$out" | grep -q "no-such-device"; then echo "FAIL unknown device: exit $rc: $out"; fail=1
else echo "ok   unknown device -> exit 3 with message"; fi
check "bad usage" 2 "$clq" --no-such-flag
check "help" 0 "$clq" --help
"$clq" --help | grep -q "Exit codes" || { echo "FAIL --help has no exit codes"; fail=1; }
check "version" 0 "$clq" --version
"$clq" --version | grep -Eq "^clquant [0-9]+\.[0-9]+\.[0-9]+ \(git ([0-9a-f]{12}(-dirty)?|unknown)\)$" || { echo "FAIL --version: $("$clq" --version)"; fail=1; }
[ -n "${CLI_EXTRA:-}" ] && source "$CLI_EXTRA"
if [ $fail -ne 0 ]; then echo "0 passed, 1 failed"; exit 1; fi
echo "cli: all checks passed"
