#!/usr/bin/env bash
# Idempotent setup for a fresh Debian 12 machine: system packages (apt) and a Python
# environment with libtorch (the PyPI torch wheel) and the reference libraries used as
# test oracles. Everything is cached outside the clone, in $MOEQ_CACHE (~/.cache/moeq).
# A second run only checks stamps and returns in seconds.
set -euo pipefail
MOEQ_CACHE=${MOEQ_CACHE:-$HOME/.cache/moeq}
VENV=$MOEQ_CACHE/venv
mkdir -p "$MOEQ_CACHE"
SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo

# chromium: headless screenshots of moeq compare's report.html in the tests.
# libpcre2-dev, libutf8proc-dev: the native tokenizer (regex pre-tokenizers, NFC).
# libcli11-dev: the command-line parser (header-only).
APT_PKGS="build-essential cmake ninja-build ccache pkg-config libyaml-cpp-dev libhdf5-dev \
libeigen3-dev nlohmann-json3-dev libomp-dev chromium libpcre2-dev libutf8proc-dev libcli11-dev"
# Python packages: torch is pinned to the GPU machine's version; the others are oracles.
PY_PKGS="torch==2.11.0 transformers==5.17.0 safetensors==0.8.0 numpy bitsandbytes==0.50.2 \
compressed-tensors==0.20.0 nvidia-modelopt==0.47.0 accelerate==1.15.0 requests pyyaml \
tokenizers==0.23.3 sentencepiece==0.2.3 protobuf"
STAMP_APT=$MOEQ_CACHE/apt.stamp
STAMP_PY=$MOEQ_CACHE/python.stamp
want_apt="$APT_PKGS catch2>=3"
want_py="$PY_PKGS"

if [ ! -f "$STAMP_APT" ] || [ "$(cat "$STAMP_APT")" != "$want_apt" ]; then
  echo "[setup] installing system packages"
  export DEBIAN_FRONTEND=noninteractive
  if ! grep -rqs bookworm-backports /etc/apt/sources.list /etc/apt/sources.list.d/; then
    echo "deb http://deb.debian.org/debian bookworm-backports main" | $SUDO tee /etc/apt/sources.list.d/backports.list >/dev/null
  fi
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq $APT_PKGS >/dev/null
  # Catch2 v3 is only in bookworm-backports (bookworm itself has v2).
  $SUDO apt-get install -y -qq -t bookworm-backports catch2 >/dev/null
  echo "$want_apt" > "$STAMP_APT"
fi

if [ ! -x "$VENV/bin/python" ] || [ ! -f "$STAMP_PY" ] || [ "$(cat "$STAMP_PY")" != "$want_py" ]; then
  echo "[setup] installing Python packages into $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip
  "$VENV/bin/pip" install -q $PY_PKGS
  echo "$want_py" > "$STAMP_PY"
fi
echo "[setup] ok: $("$VENV/bin/python" -c 'import torch;print("torch", torch.__version__)')"
