#!/usr/bin/env bash
# Sets up a fresh machine: oneDNN for the native CPU kernels (when apt and root or sudo are
# available; otherwise it says what to install and goes on), then the npm packages, whose
# install step builds the native addon. Without oneDNN everything runs on stock TensorFlow.js.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! dpkg -s libdnnl-dev >/dev/null 2>&1; then
  sudo=""
  if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then sudo="sudo"; fi
  if command -v apt-get >/dev/null 2>&1 && { [ "$(id -u)" -eq 0 ] || [ -n "$sudo" ]; }; then
    { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq libdnnl-dev; } >/dev/null 2>&1 \
      || echo "warning: could not install libdnnl-dev; native kernels will not be built" >&2
  else
    echo "note: install libdnnl-dev (oneDNN) for the native CPU kernels; continuing without them" >&2
  fi
fi
npm ci
