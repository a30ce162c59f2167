#!/usr/bin/env bash
# The whole test suite, as the README's second command and .ci/run call it.
# Installs what the tests need (the project's test extras; Debian's chromium and chromium-driver for
# the browser tests) when it is missing, runs ruff, then pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x /usr/bin/chromium ] || [ ! -d /usr/share/fonts/truetype/wqy ]; then
  echo "== installing Debian's chromium, chromium-driver and a CJK font for the browser tests"
  SUDO=""
  if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium chromium-driver fonts-wqy-microhei >/dev/null
fi

# issue 11: Node's ws for the echo-profile tests (tests/conform/test_echo.py), pinned by
# tests/fixtures/echo/package-lock.json, into tests/fixtures/echo/node_modules (gitignored)
if [ ! -d tests/fixtures/echo/node_modules/ws ]; then
  if ! command -v npm >/dev/null; then
    echo "== installing Debian's nodejs and npm for the echo-profile tests"
    SUDO=""
    if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq nodejs npm >/dev/null
  fi
  echo "== installing Node's ws into tests/fixtures/echo/node_modules (npm ci)"
  npm ci --prefix tests/fixtures/echo --no-audit --no-fund --silent
fi

if ! command -v prometheus >/dev/null 2>&1; then
  # a real Prometheus scrapes `wsbench run --metrics` in tests/commands/test_metrics_prometheus.py
  echo "== installing Debian's prometheus for the live-metrics test"
  SUDO=""
  if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi

echo "== installing wsbench with its test extras"
python3 -m pip install -q -e '.[test]'

echo "== ruff"
python3 -m ruff check .

echo "== mypy (strict on wsbench/core: pyproject.toml [tool.mypy])"
python3 -m mypy

echo "== pytest"
python3 -m pytest -q -p no:cacheprovider "$@"
