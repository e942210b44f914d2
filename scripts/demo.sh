#!/usr/bin/env bash
# One command for a newcomer: installs the system packages, builds a release, creates a demo
# deployment of 25 users in ./demo (Telethon v7/v8 and Pyrogram session files, a legacy-style
# bot database with plaintext secrets), and runs the main job on it: init (keys, schema,
# encrypted secrets), a full backup, the archive list and a health check.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
install_system_packages
swift build "${TGSESS_RELEASE_FLAGS[@]}" --product tgsess
swift build "${TGSESS_RELEASE_FLAGS[@]}" --product tgsess-fleet
bin=$(swift build "${TGSESS_RELEASE_FLAGS[@]}" --show-bin-path)
demo=${DEMO_DIR:-$PWD/demo}
users=${DEMO_USERS:-25}
if [ ! -e "$demo/data/telegram_bot.db" ]; then
  "$bin/tgsess-fleet" --root "$demo" --users "$users" --legacy
fi
echo "== tgsess init (keys, schema)"
"$bin/tgsess" init --root "$demo"
echo "== tgsess status"
"$bin/tgsess" status --root "$demo"
echo "== tgsess backup (the main job: cron runs it hourly)"
"$bin/tgsess" backup --root "$demo"
echo "== tgsess list"
"$bin/tgsess" list --root "$demo" --kind full
echo "== tgsess check"
"$bin/tgsess" check --root "$demo" || true
