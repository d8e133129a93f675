#!/usr/bin/env bash
# Install the Prometheus server and promtool (Debian package `prometheus`) for the deploy tests.
#
# Idempotent: does nothing when both binaries are already on PATH. Never fails its caller:
# when it cannot install (not root, no apt-get, no network) it prints why and exits 0, and
# the tests that need the binaries skip with a reason.
#
# The package's maintainer scripts try to start a `prometheus` daemon on :9090. Tests run
# their own Prometheus on a free port, so the daemon is kept from starting (policy-rc.d)
# and, should one have started anyway, stopped by its pid.
set -u

if command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; then
    echo "install-prometheus: prometheus and promtool already installed"
    exit 0
fi

say_skip() {
    echo "install-prometheus: $1; the Prometheus tests will be skipped" >&2
    exit 0
}

command -v apt-get >/dev/null 2>&1 || say_skip "apt-get not found (not Debian/Ubuntu)"
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        exec sudo -n "$0" "$@"
    fi
    say_skip "not root and no password-less sudo"
fi

export DEBIAN_FRONTEND=noninteractive

# Exit status 101 tells invoke-rc.d "action forbidden": no daemon is started by the install.
policy=/usr/sbin/policy-rc.d
had_policy=0
[ -e "$policy" ] && had_policy=1
if [ "$had_policy" -eq 0 ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod +x "$policy"
fi

status=0
apt-get update -qq || status=$?
if [ "$status" -eq 0 ]; then
    apt-get install -y -qq --no-install-recommends prometheus || status=$?
fi

[ "$had_policy" -eq 0 ] && rm -f "$policy"

# Belt and braces: a daemon started despite the policy would hold :9090.
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    systemctl disable --now prometheus >/dev/null 2>&1 || true
fi
if [ -f /run/prometheus.pid ]; then
    kill "$(cat /run/prometheus.pid)" 2>/dev/null || true
fi

if [ "$status" -ne 0 ]; then
    say_skip "apt-get failed with status $status"
fi
echo "install-prometheus: installed $(prometheus --version 2>&1 | head -n 1)"
exit 0
