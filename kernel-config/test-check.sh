#!/bin/sh
# Tests check.sh: it must pass a config that has every requested option and
# fail, naming the option, when one was dropped or changed.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

cat > "$tmp/frag.config" <<'F'
# comment
CONFIG_A=y
CONFIG_B="text"
# CONFIG_C is not set
F
printf 'CONFIG_A=y\nCONFIG_B="text"\n# CONFIG_C is not set\nCONFIG_D=y\n' > "$tmp/good"
printf 'CONFIG_B="text"\n# CONFIG_A is not set\n' > "$tmp/dropped"
printf 'CONFIG_A=y\nCONFIG_B="text"\nCONFIG_C=y\n' > "$tmp/forced"

fail() { echo "test-check: $*" >&2; exit 1; }

"$here/check.sh" "$tmp/good" "$tmp/frag.config" || fail "a complete config was refused"

if "$here/check.sh" "$tmp/dropped" "$tmp/frag.config" 2>"$tmp/err"; then
    fail "a dropped option was accepted"
fi
grep -q 'frag.config: wanted CONFIG_A=y, got: # CONFIG_A is not set' "$tmp/err" || fail "dropped option not named: $(cat "$tmp/err")"

if "$here/check.sh" "$tmp/forced" "$tmp/frag.config" 2>"$tmp/err"; then
    fail "an option that should be unset was accepted"
fi
grep -q 'CONFIG_C should be unset, got CONFIG_C=y' "$tmp/err" || fail "forced option not named: $(cat "$tmp/err")"
echo "kernel-config/check.sh: ok"
