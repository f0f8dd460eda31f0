#!/usr/bin/env bash
# The lock files the image installs from (deploy/Dockerfile), with hashes:
#   requirements.lock   the runtime dependencies of pyproject.toml (no dev extra)
#   deploy/build.lock   the build backends that turn relay/ and native/ into wheels
# Universal (every platform, markers kept) and made for Python 3.11, the image's.
#
#   deploy/lock.sh           rewrite both, keeping every pin the constraints allow
#   deploy/lock.sh --upgrade rewrite both with the newest versions allowed
#   deploy/lock.sh --check   fail when either file is not what pyproject.toml gives
set -euo pipefail
cd "$(dirname "$0")/.."

UV=.venv/bin/uv
test -x "$UV" || .venv/bin/pip install --quiet uv==0.13.9

compile() {  # compile OUTPUT [uv args...]; reads requirements from stdin when given "-"
    local output=$1
    shift
    "$UV" pip compile --quiet --universal --python-version 3.11 --generate-hashes \
        --custom-compile-command "make lock" "$@" -o "$output"
}
lock() {  # lock REQUIREMENTS_LOCK BUILD_LOCK [extra uv args...]
    local runtime=$1 build=$2
    shift 2
    compile "$runtime" pyproject.toml "$@"
    # [build-system] requires of pyproject.toml and native/pyproject.toml (maturin)
    .venv/bin/python -c 'import tomllib; print("\n".join(r for f in ("pyproject.toml", "native/pyproject.toml") for r in tomllib.load(open(f, "rb"))["build-system"]["requires"]))' \
        | compile "$build" - "$@"
}

case "${1:-}" in
    "") lock requirements.lock deploy/build.lock ;;
    --upgrade) lock requirements.lock deploy/build.lock --upgrade ;;
    --check)
        scratch=$(mktemp -d)
        trap 'rm -rf "$scratch"' EXIT
        cp requirements.lock "$scratch/requirements.lock"
        cp deploy/build.lock "$scratch/build.lock"
        lock "$scratch/requirements.lock" "$scratch/build.lock"
        if ! diff -u requirements.lock "$scratch/requirements.lock" \
            || ! diff -u deploy/build.lock "$scratch/build.lock"; then
            echo "lock files are stale: run make lock" >&2
            exit 1
        fi
        ;;
    *) echo "usage: deploy/lock.sh [--upgrade | --check]" >&2; exit 2 ;;
esac
