#!/bin/sh
# Starts this release's web server, replacing the one of the release before.
# Runs in the release folder with FLEETCORE_RELEASE_DIR, FLEETCORE_COMMIT,
# FLEETCORE_ROLE and FLEETCORE_DEVICE_ID set.
set -e
. ./config/web.env
pidfile="$FLEETCORE_STATE_DIR/web.pid"
if [ -f "$pidfile" ]; then kill "$(cat "$pidfile")" 2>/dev/null || true; sleep 0.3; fi
nohup python3 -m http.server "$PORT" --bind 127.0.0.1 --directory "$FLEETCORE_RELEASE_DIR/www" \
  >"$FLEETCORE_STATE_DIR/web.log" 2>&1 &
echo $! > "$pidfile"
echo "web server for release $FLEETCORE_COMMIT on port $PORT"
