# Sourced by .ci/run. NATS tests (tests/nats) need nats-server and a NATS on 127.0.0.1:4222; in CI they
# fail rather than skip without them. Start one only if none answers; stop only that one.
nats_answers() { (exec 3<>/dev/tcp/127.0.0.1/4222 && head -c 4 <&3 | grep -q INFO) 2>/dev/null; }
if ! command -v nats-server >/dev/null && [ ! -x /usr/sbin/nats-server ]; then
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq nats-server
fi
if ! nats_answers; then
    nats_bin="$(command -v nats-server || echo /usr/sbin/nats-server)"
    nats_pidfile="$(mktemp -d)/nats-ci.pid"
    mkdir -p /var/lib/nats-server
    start-stop-daemon --start --oknodo --background --make-pidfile --pidfile "$nats_pidfile" \
        --exec "$nats_bin" -- -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server \
        -l /var/log/nats-server.log
    CLEANUP+=("start-stop-daemon --stop --oknodo --retry 5 --pidfile '$nats_pidfile'; rm -rf '${nats_pidfile%/*}'")
    for _ in $(seq 50); do nats_answers && break; sleep 0.1; done
    nats_answers
fi
