#!/bin/sh
# As the official image's entrypoint: own /data (a fresh volume), drop to the redis user, and turn
# protected mode off ahead of the given arguments (they can still turn it on).
set -e
if [ "$1" = "redis-server" ] && [ "$(id -u)" = "0" ]; then
    shift
    chown -R redis:redis /data
    exec setpriv --reuid=redis --regid=redis --init-groups redis-server --protected-mode no "$@"
fi
exec "$@"
