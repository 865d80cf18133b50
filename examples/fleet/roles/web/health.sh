#!/bin/sh
# Healthy when the server this release started is alive (the http check in
# role.toml asks it for a page too).
kill -0 "$(cat "$FLEETCORE_STATE_DIR/web.pid" 2>/dev/null)" 2>/dev/null
