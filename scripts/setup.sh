#!/usr/bin/env bash
# Sets up a fresh machine: the Debian packages the project uses (oneDNN for the native CPU
# kernels; Chromium, which the report's tests drive headless) when apt and root or sudo are
# available, otherwise it says what to install and goes on; then the npm packages, whose
# install step builds the native addon. Without oneDNN everything runs on stock TensorFlow.js.
set -euo pipefail
cd "$(dirname "$0")/.."
missing=()
for pkg in libdnnl-dev chromium; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
  sudo=""
  if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then sudo="sudo"; fi
  if command -v apt-get >/dev/null 2>&1 && { [ "$(id -u)" -eq 0 ] || [ -n "$sudo" ]; }; then
    { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"; } >/dev/null 2>&1 \
      || echo "warning: could not install ${missing[*]}; without libdnnl-dev the native kernels are not built, without chromium the report's browser test fails" >&2
  else
    echo "note: install ${missing[*]} (libdnnl-dev: oneDNN for the native CPU kernels; chromium: the report's browser test); continuing without them" >&2
  fi
fi
npm ci
