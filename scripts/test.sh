#!/usr/bin/env bash
# The test command: installs the interop peers (servers nobody at moorline wrote) and runs
# every test of the workspace (unit, integration, doc). Extra arguments go to `cargo test`.
#
#   Python `websockets` and Hypercorn: pip, into a virtual environment under cargo's target
#   directory (target/interop-venv; the system Python is left alone). The interop tests find
#   it through MOORLINE_PYTHON (exported here) or, when run by plain `cargo test` later, at
#   that path. Node `ws`: npm, pinned by package-lock.json.
set -euo pipefail
cd "$(dirname "$0")/.."

requirements=crates/moorline/tests/interop/requirements.txt

# cargo's target directory (CARGO_TARGET_DIR or a cargo config may move it).
target_dir=$(cargo metadata --format-version 1 --no-deps |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
venv="$target_dir/interop-venv"

# Runs a command as root: directly, or through sudo if it asks for no password.
as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    sudo -n "$@"
  else
    return 1
  fi
}

# Creates the virtual environment with pip in it. Debian and Ubuntu ship `venv`'s pip
# bootstrap (ensurepip) in a separate package, python3-venv: installed with apt-get when
# missing (as root, or with password-less sudo). Last resort: `virtualenv`, which brings its own pip.
make_venv() {
  rm -rf "$venv"
  if python3 -m venv "$venv" >/dev/null 2>&1; then
    return 0
  fi
  rm -rf "$venv"
  if command -v apt-get >/dev/null 2>&1; then
    local version pkg
    version=$(python3 -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
    for pkg in python3-venv "python$version-venv"; do
      echo "== python3 -m venv needs ensurepip: installing $pkg with apt-get"
      if { as_root apt-get install -y -qq "$pkg" ||
        { as_root apt-get update -qq && as_root apt-get install -y -qq "$pkg"; }; } >/dev/null 2>&1 &&
        python3 -m venv "$venv" >/dev/null 2>&1; then
        return 0
      fi
      rm -rf "$venv"
    done
  fi
  if command -v virtualenv >/dev/null 2>&1 && virtualenv -q -p python3 "$venv"; then
    return 0
  fi
  rm -rf "$venv"
  echo "cannot create a Python virtual environment in $venv: install python3-venv" \
    "(Debian/Ubuntu: apt-get install python3-venv) or virtualenv, then run $0 again" >&2
  return 1
}

# Reuse the environment while it works (a Python upgrade can break it).
if ! "$venv/bin/python" -m pip --version >/dev/null 2>&1; then
  make_venv
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements"
export MOORLINE_PYTHON="$venv/bin/python"

npm ci --silent --no-audit --no-fund --prefix crates/moorline/tests/interop

cargo test --workspace "$@"
