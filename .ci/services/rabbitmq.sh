# Sourced by .ci/run. RabbitMQ tests (tests/rabbitmq) need a RabbitMQ on 127.0.0.1:5672 (guest/guest)
# and rabbitmqctl (the restart test runs it as root); in CI they fail rather than skip without them.
# Start one only if nothing answers on 5672; stop only that one (and the epmd it leaves behind).
rabbitmq_listening() { (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null; }
if ! command -v rabbitmq-server >/dev/null || ! command -v rabbitmqctl >/dev/null; then
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    # Debian's package starts the service itself where systemd runs; the check below copes.
    $sudo apt-get install -y -qq rabbitmq-server
fi
if ! rabbitmq_listening; then
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
    epmd_before="$(pgrep -x epmd || true)"
    # Loopback only: AMQP, the Erlang distribution port and epmd.
    $sudo env RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 ERL_EPMD_ADDRESS=127.0.0.1 \
        RABBITMQ_SERVER_START_ARGS="-kernel inet_dist_use_interface {127,0,0,1}" \
        rabbitmq-server -detached
    CLEANUP+=("$sudo rabbitmqctl stop >/dev/null 2>&1")
    # Booting takes about 15 s here; bound the wait.
    timeout 120 $sudo rabbitmqctl await_startup --timeout 110 >/dev/null
    if [ -z "$epmd_before" ]; then  # the epmd this start left behind: stop it by PID
        for pid in $(pgrep -x epmd || true); do CLEANUP+=("$sudo kill $pid 2>/dev/null"); done
    fi
    for _ in $(seq 100); do rabbitmq_listening && break; sleep 0.1; done
    rabbitmq_listening
fi
