#!/bin/sh
# The Sentinel beside each Redis: it monitors the primary the Sentinels name (redis-0 at the
# very first start) and rewrites its own config file, so the file lives on an emptyDir.
set -eu
master=""
for i in 0 1 2; do
  master=$(redis-cli -h "redis-$i.redis-headless" -p 26379 -a "$REDIS_PASSWORD" --no-auth-warning \
    sentinel get-master-addr-by-name qi 2>/dev/null | head -n 1) || true
  [ -n "$master" ] && break
done
[ -n "$master" ] || master="redis-0.redis-headless"
cat > /sentinel/sentinel.conf <<CONF
port 26379
sentinel resolve-hostnames yes
sentinel announce-hostnames yes
sentinel announce-ip $POD_NAME.redis-headless
requirepass $REDIS_PASSWORD
sentinel sentinel-pass $REDIS_PASSWORD
sentinel monitor qi $master 6379 2
sentinel auth-pass qi $REDIS_PASSWORD
sentinel down-after-milliseconds qi 5000
sentinel failover-timeout qi 60000
sentinel parallel-syncs qi 1
CONF
exec redis-server /sentinel/sentinel.conf --sentinel
