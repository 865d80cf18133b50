#!/bin/sh
# Runs in the new release before it is activated; non-zero keeps the old one.
set -e
test -s www/index.html || { echo "www/index.html is missing or empty" >&2; exit 1; }
. ./config/web.env
case "$PORT" in ''|*[!0-9]*) echo "PORT must be a number, got '$PORT'" >&2; exit 1;; esac
