#!/bin/sh
# Host keys are made once and kept on the state disk, so they don't
# change on reboot; then sshd runs in the foreground, logging to stderr.
set -eu
keys=/var/lib/corral/ssh
mkdir -p "$keys" /run/sshd
chmod 0755 /run/sshd
# /run is this container's own tmpfs: the link docker's clients look for.
ln -sfn /run/corral/docker/docker.sock /run/docker.sock
for t in ed25519; do
    key=$keys/ssh_host_${t}_key
    if [ ! -s "$key" ] || [ ! -s "$key.pub" ]; then
        rm -f "$key" "$key.pub"
        ssh-keygen -q -t "$t" -N '' -C "corral host key" -f "$key"
        echo "sshd-start: generated the $t host key in $keys" >&2
    fi
done
if [ ! -d /home/corral ]; then
    mkdir -p /home/corral
    chown 1000:1000 /home/corral
    chmod 0755 /home/corral
fi
exec /usr/sbin/sshd -D -e
