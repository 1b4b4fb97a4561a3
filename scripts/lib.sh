# Shell functions shared by the scripts; sourced (`. scripts/lib.sh`), not run.

# wait_for_health URL [SECONDS]: waits until GET URL/health answers 2xx; stops the calling script with a message when
# nothing does within SECONDS (default 30), instead of letting its next step fail on a server that never started.
wait_for_health() {
    local tries=$((${2:-30} * 10))
    for _ in $(seq "$tries"); do curl -sf "$1/health" >/dev/null && return; sleep 0.1; done
    echo "nothing answered GET $1/health within ${2:-30} s" >&2
    exit 1
}
