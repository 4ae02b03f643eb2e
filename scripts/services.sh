# Sourced by demo.sh: start Tansu and VictoriaMetrics on loopback, on free
# ports, in a scratch folder, and stop them on exit.
# Needs: TANSU_BIN, VICTORIA_METRICS_BIN (from setup.sh's env file).

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

wait_for() { # what, command...
    local what=$1; shift
    for _ in $(seq 1 100); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.1
    done
    echo "timed out waiting for $what" >&2
    return 1
}

start_tansu() { # port logfile
    local port=$1 log=$2
    "$TANSU_BIN" broker --listener-url "tcp://127.0.0.1:$port" \
        --advertised-listener-url "tcp://localhost:$port" \
        --storage-engine memory://tansu/ >"$log" 2>&1 &
    PIDS+=($!)
    wait_for "Tansu on port $port" bash -c "exec 3<>/dev/tcp/127.0.0.1/$port"
}

start_victoria_metrics() { # port datadir logfile
    local port=$1 data=$2 log=$3
    "$VICTORIA_METRICS_BIN" -storageDataPath="$data" -httpListenAddr="127.0.0.1:$port" \
        -retentionPeriod=100y -search.disableCache -search.latencyOffset=0s \
        -dedup.minScrapeInterval=1ms >"$log" 2>&1 &
    PIDS+=($!)
    wait_for "VictoriaMetrics on port $port" curl -fsS "http://127.0.0.1:$port/health"
}

stop_services() {
    for pid in "${PIDS[@]:-}"; do
        [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
    done
    wait 2>/dev/null || true
}
PIDS=()
