#!/bin/sh
# rsyslog runs this when the log passes its size limit: FILE becomes
# FILE.1, FILE.1 becomes FILE.2 ... keeping KEEP files; rsyslog then
# reopens FILE.
# usage: rotate-log FILE KEEP
set -u
f=$1
keep=${2:-5}
i=$keep
while [ "$i" -gt 1 ]; do
    j=$((i - 1))
    [ -f "$f.$j" ] && mv -f "$f.$j" "$f.$i"
    i=$j
done
mv -f "$f" "$f.1"
