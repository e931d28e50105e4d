#!/bin/sh
# Writes rsyslog's config from [syslog] of the system config (read with
# the corral CLI) and runs rsyslogd in the foreground.
set -eu
conf=/run/rsyslog.conf
get() { corral config get "$1"; }
size=$(get syslog.max-size)
# corral prints sizes as bytes or with a k/M/G suffix.
case $size in
    *G) bytes=$((${size%G} * 1073741824)) ;;
    *M) bytes=$((${size%M} * 1048576)) ;;
    *k) bytes=$((${size%k} * 1024)) ;;
    *) bytes=$size ;;
esac
keep=$(get syslog.keep)
remote=$(get syslog.remote 2>/dev/null || true)
# rsyslog runs the rotation command with at most one argument: the
# number of files to keep goes into a wrapper.
rotate=/run/rotate-messages
printf '#!/bin/sh\nexec /usr/libexec/corral/rotate-log /var/log/messages %s\n' "$keep" >"$rotate"
chmod 0755 "$rotate"
cat >"$conf" <<CONF
global(workDirectory="/var/spool/rsyslog" maxMessageSize="8k")
# The socket every container's /dev/log points to.
module(load="imuxsock" SysSock.Name="/run/corral/syslog/log")
# The kernel's messages.
module(load="imkmsg")
# Rotated by size: rotate-log runs when the file passes $bytes bytes.
\$outchannel messages,/var/log/messages,$bytes,$rotate
*.* :omfile:\$messages
CONF
case $remote in
    '') ;;
    udp://*) echo "*.* @${remote#udp://}" >>"$conf" ;;
    tcp://*) echo "*.* @@${remote#tcp://}" >>"$conf" ;;
esac
[ -z "$remote" ] || echo "syslog-start: forwarding to $remote" >&2
exec rsyslogd -n -iNONE -f "$conf"
