#!/bin/sh
# systemd-udevd in the foreground of this container, coldplug once it
# listens: every device the kernel found before now gets its "add" event
# replayed, then settle waits for the rules to finish.
set -u
/lib/systemd/systemd-udevd &
pid=$!
trap 'kill -TERM $pid' TERM INT
i=0
until [ -S /run/udev/control ]; do
    i=$((i + 1))
    if [ $i -gt 100 ] || ! kill -0 $pid 2>/dev/null; then
        echo "udev-start: systemd-udevd did not come up" >&2
        exit 1
    fi
    sleep 0.1
done
udevadm trigger --type=subsystems --action=add
udevadm trigger --type=devices --action=add
if udevadm settle --timeout=60; then
    echo "udev-start: coldplug done" >&2
else
    echo "udev-start: coldplug: events still queued after 60 s" >&2
fi
# wait returns early when a trapped signal arrives; then wait for the exit.
wait $pid
wait $pid
