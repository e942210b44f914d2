#!/usr/bin/env bash
# Creates the test virtualenv (.venv-test) with the real peers the tests talk to:
# Telethon (schema v8) and Pyrogram in the venv itself, plus peers that cannot share it,
# installed with --target under .venv-test/peers/: Telethon 1.42 (schema v7), kurigram, pyrofork,
# Hydrogram (its own `hydrogram` module, but aiosqlite is not in the venv).
set -euo pipefail
cd "$(dirname "$0")/.."
venv=.venv-test
python=${PYTHON:-python3}
if [ ! -x "$venv/bin/python" ]; then
  "$python" -m venv "$venv"
fi
pip="$venv/bin/pip --disable-pip-version-check -q"
$pip install 'telethon==1.45.0' 'pyrogram==2.0.106' 'cryptography>=41' 'moto[server]>=5.2,<6'
install_peer() { # name, requirement
  local dir="$venv/peers/$1"
  if [ ! -f "$dir/.installed" ]; then
    rm -rf "$dir"
    $pip install --no-deps --target "$dir" "${@:2}"
    touch "$dir/.installed"
  fi
}
install_peer telethon142 'telethon==1.42.0'
install_peer kurigram 'kurigram==2.2.26' python-socks pymediainfo
install_peer pyrofork 'pyrofork==2.3.69' python-socks pymediainfo
install_peer hydrogram 'hydrogram==0.2.0' 'aiosqlite==0.20.0' 'pyaes==1.6.1' 'pysocks==1.7.1'
echo "test peers ready in $venv"
