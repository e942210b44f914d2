# Shared by the set-up, demo and test scripts. Source it; it changes nothing by itself.
# prometheus is there for promtool, which tests cron/tgsess.rules.yml.
# shellcheck shell=bash
TGSESS_APT_PACKAGES=(libsqlite3-dev libssl-dev libarchive-dev pkg-config sqlite3 zstd age libarchive-tools tar python3 python3-venv systemd rclone prometheus-node-exporter prometheus curl)

# Swift lives at /opt/swift on the project's machines.
if [ -d /opt/swift/usr/bin ] && ! command -v swift >/dev/null 2>&1; then
  export PATH=/opt/swift/usr/bin:$PATH
fi

# Installs the system packages tgsess builds and tests against (Debian; needs root).
install_system_packages() {
  local missing=()
  for pkg in "${TGSESS_APT_PACKAGES[@]}" "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
  command -v swift >/dev/null 2>&1 || { echo "swift not found: install Swift 6.x (expected at /opt/swift)" >&2; return 1; }
}

# How release binaries are built (demo, bench, install): the Swift runtime and Foundation linked
# in, so a binary needs no Swift toolchain beside it and starts in ~9 ms instead of ~19 ms.
TGSESS_RELEASE_FLAGS=(-c release --static-swift-stdlib)
