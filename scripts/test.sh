#!/usr/bin/env bash
# The whole test suite, from a fresh Debian machine: system packages, the Python test peers
# (a virtualenv with Telethon, Pyrogram and cryptography), the format lint, the build, and the
# tests. .ci/run calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
# strace: RestoreScaleTests reads a single-user run's directory reads under it.
install_system_packages strace
scripts/test-peers.sh
echo "== swift format lint"
swift format lint --strict --recursive Sources Tests Package.swift
echo "== swift build"
swift build --build-tests
echo "== swift test"
swift test --skip-build
