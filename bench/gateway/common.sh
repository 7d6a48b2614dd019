# bench/gateway/common.sh: helpers shared by the gateway bench scripts
# (gateway.sh, gateway-paired.sh, gateway-instructions.sh,
# gateway-syscalls.sh).
# Source it after setting STATE (the run's state directory); it defines
# functions only.

# require_tools HINT TOOL...: exit 2 naming every missing tool, with HINT
# (the install command) after them.
require_tools() {
    local hint=$1 missing=() c
    shift
    for c in "$@"; do command -v "$c" >/dev/null || missing+=("$c"); done
    if ((${#missing[@]})); then
        echo "missing: ${missing[*]} ($hint)" >&2
        exit 2
    fi
}

# render SRC DEST: a config from bench/gateway/ with @STATE@ filled in.
render() { sed "s#@STATE@#$STATE#g" "$1" >"$2"; }

# wait_http URL: wait up to 20 s for any HTTP answer from URL.
wait_http() {
    for _ in $(seq 1 200); do
        curl -s -o /dev/null --max-time 1 "$1" && return 0
        sleep 0.1
    done
    echo "no answer from $1" >&2
    return 1
}

# sluice_default_headers FILE: a rendered sluice-proxy.toml without its
# [proxy_headers] table (the last in the file, matching nginx-proxy.conf's
# header work), so that sluice does its default header work (--same-headers).
sluice_default_headers() { sed -i '/^\[proxy_headers\]/,$d' "$1"; }
