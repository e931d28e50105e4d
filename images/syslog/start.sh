#!/bin/sh
# Writes rsyslog's config from the service's environment and runs it.
set -eu
conf=/run/rsyslog.conf
max=${SYSLOG_MAX_SIZE:-1048576}
case $max in
    '' | *[!0-9]*)
        echo "syslog: SYSLOG_MAX_SIZE=$max: expected a size in bytes" >&2
        exit 2
        ;;
esac
cat >"$conf" <<CONF
global(workDirectory="/var/spool/rsyslog" maxMessageSize="8k")
# The socket every container's /dev/log points to.
module(load="imuxsock" SysSock.Name="/run/corral/syslog/log")
# The kernel's messages.
module(load="imkmsg")
# Rotated by size: rotate-log runs when the file passes $max bytes.
\$outchannel messages,/var/log/messages,$max,/usr/libexec/corral/rotate-log /var/log/messages
*.* :omfile:\$messages
CONF
remote=${SYSLOG_REMOTE:-}
case $remote in
    '') ;;
    udp://?*) echo "*.* @${remote#udp://}" >>"$conf" ;;
    tcp://?*) echo "*.* @@${remote#tcp://}" >>"$conf" ;;
    *)
        echo "syslog: SYSLOG_REMOTE=$remote: expected udp://HOST[:PORT] or tcp://HOST[:PORT]" >&2
        exit 2
        ;;
esac
exec rsyslogd -n -iNONE -f "$conf"
