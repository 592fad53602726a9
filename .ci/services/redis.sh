# Sourced by .ci/run. Redis tests (tests/redis) need redis-server and a Redis on 127.0.0.1:6379; in CI they
# fail rather than skip without them. Start one only if none answers; stop only that one.
if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq redis-server
fi
if ! redis-cli -p 6379 ping >/dev/null 2>&1; then
    mkdir -p /var/lib/redis /var/log/redis
    redis_pidfile="$(mktemp -d)/redis-ci.pid"
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
        --dir /var/lib/redis --logfile /var/log/redis/ci.log --pidfile "$redis_pidfile"
    CLEANUP+=("kill \"\$(cat '$redis_pidfile' 2>/dev/null)\" 2>/dev/null; rm -rf '${redis_pidfile%/*}'")
    for _ in $(seq 50); do redis-cli -p 6379 ping >/dev/null 2>&1 && break; sleep 0.1; done
    redis-cli -p 6379 ping >/dev/null
fi

