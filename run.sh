#!/usr/bin/env bash
# Set up cowdetect in ./.venv and run it.
#   ./run.sh app            install, generate the demo data if the data folder is empty, serve the app to
#                           this machine only (http://localhost:8501, no login)
#   ./run.sh app --network  serve the team on every interface (0.0.0.0), everyone logs in; refuses to start
#                           until the data folder has an admin (python -m cowdetect users add NAME --role admin)
#   ./run.sh test           install (with test tools, Ray when pip can, and chromium when apt-get can), run all
#                           tests
# Extra arguments go to streamlit (app) or pytest (test); `-- --data-dir DIR` (or $COWDETECT_DATA_DIR) picks
# the data folder. PYTHON picks the interpreter; COWDETECT_NO_INSTALL=1 uses .venv as it is (offline servers).
set -euo pipefail
cd "$(dirname "$0")"

setup() {  # $1: requirements file
  if [ "${COWDETECT_NO_INSTALL:-}" = 1 ] && [ -x .venv/bin/python ]; then return; fi
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

optional() {  # $1: an optional extra's requirements file; a failed install only skips its tests
  if [ "${COWDETECT_NO_INSTALL:-}" = 1 ]; then return; fi
  local stamp=".venv/.installed-$(basename "$1" .txt)"
  local want; want=$(cat requirements*.txt | sha256sum | cut -c1-16)
  if [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then return; fi
  if .venv/bin/python -m pip install --quiet -r "$1" && .venv/bin/python -m pip check >/dev/null; then
    echo "$want" > "$stamp"
  else
    echo "note: $1 did not install; its tests will be skipped" >&2
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

# exits 1 with one line unless the data folder (--data-dir after `--`, else $COWDETECT_DATA_DIR, else ./data)
# has an admin account; argv: the app's arguments, then the address last
NEED_ADMIN='import argparse, shlex, sys
from cowdetect.cli import data_dir_default
from cowdetect.store import DB_NAME, Store
from pathlib import Path
*app_args, address = sys.argv[1:]
parser = argparse.ArgumentParser(add_help=False)
parser.add_argument("--data-dir", default=data_dir_default())
folder = parser.parse_known_args(app_args[app_args.index("--") + 1:] if "--" in app_args else [])[0].data_dir
if not (Path(folder) / DB_NAME).is_file() or not Store(folder).has_admin():  # never make a folder to say no
    sys.exit(f"cowdetect: serving on the network ({address}) needs an admin account first: "
             f".venv/bin/python -m cowdetect users add NAME --role admin --data-dir {shlex.quote(folder)}")'

app() {  # $@: --network, streamlit options, then `--` and the app's own (--data-dir DIR)
  local network=0 address="" before=1 a i
  local args=()
  for a in "$@"; do
    if [ "$before" = 1 ] && [ "$a" = --network ]; then network=1; continue; fi
    if [ "$a" = -- ]; then before=0; fi
    args+=("$a")
  done
  for ((i = 0; i < ${#args[@]}; i++)); do  # an address given to streamlit wins
    case "${args[i]}" in
      --) break ;;
      --server.address) address="${args[i + 1]:-}" ;;
      --server.address=*) address="${args[i]#*=}" ;;
    esac
  done
  if [ -z "$address" ]; then
    if [ "$network" = 1 ]; then address=0.0.0.0; else address=127.0.0.1; fi
    args=(--server.address "$address" ${args[@]+"${args[@]}"})
  fi
  setup requirements.txt
  case "$address" in
    127.0.0.1|localhost|::1|"[::1]")
      .venv/bin/python -m cowdetect demo --if-empty ;;
    *)  # the network: an admin first; a team's data folder gets no demo cows (Home offers them)
      .venv/bin/python -c "$NEED_ADMIN" ${args[@]+"${args[@]}"} "$address" || exit 2
      args=(--client.showErrorDetails type "${args[@]}") ;;  # no tracebacks (server paths) for the team
  esac
  exec .venv/bin/python -m streamlit run app.py "${args[@]}"
}

case "${1:-}" in
  app)
    shift
    app "$@"
    ;;
  test)
    shift
    setup requirements-dev.txt
    optional requirements-ray.txt  # the Ray tests (track-many, prelabel --ray); skipped without it
    ensure_chromium
    exec .venv/bin/python -m pytest "$@"
    ;;
  *)
    echo "usage: ./run.sh app [--network] [streamlit options] [-- --data-dir DIR] | ./run.sh test [pytest args]" >&2
    exit 2
    ;;
esac
