#!/usr/bin/env bash
# Set up cowdetect in ./.venv and run it.
#   ./run.sh app    install, generate the demo data if the data folder is empty, start the app
#   ./run.sh test   install (with test tools, and chromium when apt-get can), run all tests
# Extra arguments go to streamlit (app) or pytest (test). PYTHON picks the interpreter.
set -euo pipefail
cd "$(dirname "$0")"

setup() {  # $1: requirements file
  local py="${PYTHON:-python3}"
  "$py" -c 'import sys; sys.exit(sys.version_info < (3, 10))' \
    || { echo "cowdetect needs Python 3.10 or newer ($py is $("$py" --version 2>&1))" >&2; exit 1; }
  [ -x .venv/bin/python ] || "$py" -m venv .venv
  # Reinstall only when the requirement files changed since the last install.
  local stamp=".venv/.installed-$(basename "$1" .txt)"
  local want; want=$(cat requirements*.txt | sha256sum | cut -c1-16)
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    .venv/bin/python -m pip install --quiet --upgrade pip
    .venv/bin/python -m pip install --quiet -r "$1"
    .venv/bin/python -m pip check
    echo "$want" > "$stamp"
  fi
}

ensure_chromium() {  # the browser tests drive Debian's chromium
  if [ -x /usr/bin/chromium ] || command -v chromium >/dev/null; then return; fi
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing chromium for the browser tests (apt-get)" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "note: chromium not found; browser tests will be skipped (install it: apt-get install chromium)" >&2
  fi
}

case "${1:-}" in
  app)
    shift
    setup requirements.txt
    .venv/bin/python -m cowdetect demo --if-empty
    exec .venv/bin/python -m streamlit run app.py "$@"
    ;;
  test)
    shift
    setup requirements-dev.txt
    ensure_chromium
    exec .venv/bin/python -m pytest "$@"
    ;;
  *)
    echo "usage: ./run.sh app | ./run.sh test [pytest args]" >&2
    exit 2
    ;;
esac
