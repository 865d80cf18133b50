#!/bin/sh
# Stops the web server (when the role changes activator, or on `demo` exit).
pidfile="$FLEETCORE_STATE_DIR/web.pid"
[ -f "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null
rm -f "$pidfile"
exit 0
