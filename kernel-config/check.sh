#!/bin/sh
# usage: kernel-config/check.sh CONFIG FRAGMENT...
# Fails, listing each one, if an option a fragment sets is not in CONFIG
# exactly as written. Kconfig silently drops options whose dependencies are
# not met, so without this a fragment can ask for something the kernel
# then lacks.
set -eu
config=${1:?usage: check.sh CONFIG FRAGMENT...}
shift
[ $# -gt 0 ] || { echo "usage: check.sh CONFIG FRAGMENT..." >&2; exit 2; }

dropped=$(
    for f in "$@"; do
        grep -E '^(CONFIG_[A-Za-z0-9_]+=.*|# CONFIG_[A-Za-z0-9_]+ is not set)$' "$f" | while IFS= read -r want; do
            case $want in
                "# "*)
                    opt=${want#\# }
                    opt=${opt%% *}
                    if got=$(grep "^$opt=" "$config"); then
                        echo "$(basename "$f"): $opt should be unset, got $got"
                    fi
                    ;;
                *)
                    opt=${want%%=*}
                    if ! grep -qxF "$want" "$config"; then
                        got=$(grep -E "^(# )?$opt[= ]" "$config" || echo "absent")
                        echo "$(basename "$f"): wanted $want, got: $got"
                    fi
                    ;;
            esac
        done
    done
)
if [ -n "$dropped" ]; then
    echo "$dropped" >&2
    echo "kernel: error: $(echo "$dropped" | wc -l) option(s) did not survive olddefconfig (unmet dependencies?)" >&2
    exit 1
fi
