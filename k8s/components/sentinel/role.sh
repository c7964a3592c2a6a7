#!/bin/sh
# Init container of each Redis pod: is this node the primary? The one the Sentinels name; if
# none answers (the very first start), redis-0. Writes /conf/role.conf: empty, or `replicaof`.
set -eu
me="$POD_NAME.redis-headless"
master=""
for i in 0 1 2; do
  master=$(redis-cli -h "redis-$i.redis-headless" -p 26379 -a "$REDIS_PASSWORD" --no-auth-warning \
    sentinel get-master-addr-by-name qi 2>/dev/null | head -n 1) || true
  [ -n "$master" ] && break
done
[ -n "$master" ] || master="redis-0.redis-headless"
if [ "$master" = "$me" ]; then
  : > /conf/role.conf
else
  echo "replicaof $master 6379" > /conf/role.conf
fi
echo "primary: $master"
