#!/usr/bin/env bash
# Make this checkout runnable on a fresh machine: a virtualenv with the package
# and its dev extras, and the Debian packages the tests start servers from.
# Idempotent and quiet when nothing changed (keyed on pyproject.toml's hash).
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
VENV=.venv
STAMP=$VENV/.installed-$(sha256sum pyproject.toml | cut -c1-16)

need_apt=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need_apt+=(mosquitto)
command -v mosquitto_passwd >/dev/null 2>&1 || need_apt+=(mosquitto)
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
command -v victoria-metrics >/dev/null 2>&1 || need_apt+=(victoria-metrics)
# FalkorDB (the Bolt stand-in) runs in a private netns, bridged out to 127.0.0.1 by socat.
command -v socat >/dev/null 2>&1 || need_apt+=(socat)
command -v ip >/dev/null 2>&1 || need_apt+=(iproute2)
# Extras some targets need (`make bench`: tmux; `make screenshots`: rsvg and Fira Code).
for pkg in ${EXTRA_APT:-}; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need_apt+=("$pkg")
done
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "bootstrap: installing ${need_apt[*]} (apt)" >&2
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
  else
    echo "bootstrap: please install: ${need_apt[*]} (sudo apt-get install ...)" >&2
  fi
fi

if [ ! -x "$VENV/bin/python" ]; then
  echo "bootstrap: creating $VENV" >&2
  "$PY" -m venv "$VENV"
fi
if [ ! -f "$STAMP" ]; then
  echo "bootstrap: installing dtp-console and its dev extras into $VENV" >&2
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip >/dev/null
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e ".[dev]"
  rm -f "$VENV"/.installed-*
  touch "$STAMP"
fi
