#!/usr/bin/env bash
# Installs EcoWatt Cloud as a service: builds release once (scripts/build-release.sh), then installs
#   /usr/local/bin/ecowatt                   the binary (and /usr/local/share/ecowatt/: commit, README)
#   /etc/ecowatt/ecowatt.json                the configuration (kept when it exists)
#   /etc/systemd/system/ecowatt.service      a hardened unit: dedicated user, ProtectSystem=strict, NoNewPrivileges,
#                                            StateDirectory=/var/lib/ecowatt (database, keys, firmware, diagnostics)
# and creates the system user `ecowatt`. It does not start the service: `systemctl enable --now ecowatt`.
#
# Usage: scripts/install.sh [--destdir DIR]
#   --destdir DIR   install below DIR (packaging, or a dry run); no user is created and systemd is not told.
set -euo pipefail
cd "$(dirname "$0")/.."

destdir=""
while [ $# -gt 0 ]; do
    case "$1" in
        --destdir) destdir="$2"; shift 2 ;;
        *) echo "usage: scripts/install.sh [--destdir DIR]" >&2; exit 2 ;;
    esac
done
if [ -z "$destdir" ] && [ "$(id -u)" -ne 0 ]; then
    echo "error: run as root (or with --destdir DIR)" >&2
    exit 1
fi

scripts/install-deps.sh
scripts/build-release.sh

install -d -m 0755 "$destdir/usr/local/bin" "$destdir/usr/local/share/ecowatt" "$destdir/etc/systemd/system"
install -d -m 0750 "$destdir/etc/ecowatt"
install -m 0755 .build/release/ecowatt "$destdir/usr/local/bin/ecowatt"
[ -f .build/release/ecowatt.commit ] && install -m 0644 .build/release/ecowatt.commit "$destdir/usr/local/share/ecowatt/commit"
install -m 0644 README.md "$destdir/usr/local/share/ecowatt/README.md"
install -m 0644 scripts/systemd/ecowatt.service "$destdir/etc/systemd/system/ecowatt.service"
if [ -e "$destdir/etc/ecowatt/ecowatt.json" ]; then
    echo "==> keeping $destdir/etc/ecowatt/ecowatt.json" >&2
else
    install -m 0640 scripts/systemd/ecowatt.json "$destdir/etc/ecowatt/ecowatt.json"
fi

if [ -z "$destdir" ]; then
    if ! id ecowatt >/dev/null 2>&1; then
        useradd --system --home-dir /var/lib/ecowatt --no-create-home --shell /usr/sbin/nologin ecowatt
        echo "==> created system user ecowatt" >&2
    fi
    chgrp ecowatt /etc/ecowatt /etc/ecowatt/ecowatt.json
    if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
        systemctl daemon-reload
    fi
fi
echo "==> installed $("$destdir/usr/local/bin/ecowatt" --version)" >&2
echo "    start:  systemctl enable --now ecowatt      (devices on :5001, operators on 127.0.0.1:5002)" >&2
echo "    token:  /var/lib/ecowatt/keys/operator_token (created at first start)" >&2
