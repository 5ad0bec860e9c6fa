#!/usr/bin/env bash
# Prepares a fresh Debian machine with python3: Debian packages (when asked for) and the
# project's virtual environment, installed from the pinned constraints file.
#   scripts/setup.sh            python environment only
#   scripts/setup.sh test       + what the test suite needs (PostgreSQL, Prometheus, Alertmanager)
#   scripts/setup.sh bench      + what the benchmarks need (nginx, wrk, blackbox_exporter)
set -euo pipefail
cd "$(dirname "$0")/.."
want="${1:-}"

debs=()
case "$want" in
  test)  debs=(python3-venv postgresql prometheus prometheus-alertmanager) ;;
  bench) debs=(python3-venv postgresql prometheus prometheus-alertmanager nginx-light wrk prometheus-blackbox-exporter) ;;
  *)     debs=(python3-venv) ;;
esac

missing=()
for p in "${debs[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
# python3-venv is only needed when the interpreter cannot make a venv by itself.
if python3 -c 'import venv, ensurepip' 2>/dev/null; then
  missing=("${missing[@]/python3-venv}")
fi
missing=($(printf '%s\n' "${missing[@]}" | grep -v '^$' || true))
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  echo "setup: installing Debian packages: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import coalmine' 2>/dev/null \
   || [ constraints.txt -nt .venv/.installed ] || [ pyproject.toml -nt .venv/.installed ]; then
  echo "setup: creating the virtual environment in .venv"
  python3 -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -c constraints.txt -e '.[dev]'
  touch .venv/.installed
fi
