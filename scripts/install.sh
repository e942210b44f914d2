#!/usr/bin/env bash
# Installs tgsess for production: builds a release, installs tgsess (and tgsess-bot when it was
# built) to $DESTDIR$PREFIX/bin, the systemd units to $DESTDIR/etc/systemd/system, the cron file
# to $DESTDIR/etc/cron.d/tgsess (only with --cron), the Prometheus alert rules to
# $DESTDIR/etc/prometheus/rules/tgsess.rules.yml when that directory exists (else to
# $DESTDIR$PREFIX/share/tgsess/tgsess.rules.yml), and an example config to
# $DESTDIR/etc/tgsess/tgsess.toml (never over an existing one). With an empty DESTDIR it also
# creates the system user tgsess and reloads systemd. Running it again changes nothing.
# --uninstall removes the binaries, units and cron file, and keeps config, keys and data.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: scripts/install.sh [--cron] [--no-build] [--bin-dir DIR] [--prefix DIR] [--uninstall]

  --cron         also install /etc/cron.d/tgsess (for hosts that use cron instead of the timers)
  --no-build     install an existing release build (.build/release) instead of building
  --bin-dir DIR  install the binaries from DIR (implies --no-build), e.g. .build/debug
  --prefix DIR   binaries go to DIR/bin (default: $PREFIX, else /usr/local)
  --uninstall    remove binaries, units, the cron file and the alert rules; keep config, keys,
                 data and the user

Environment: DESTDIR (stage into this directory instead of /; no user is created and systemd
is not touched), PREFIX (default /usr/local).

Examples:
  sudo scripts/install.sh
  sudo scripts/install.sh --cron
  DESTDIR=/tmp/stage scripts/install.sh --no-build --bin-dir .build/debug
  sudo scripts/install.sh --uninstall
EOF
}

cd "$(dirname "$0")/.."
repo=$PWD
prefix=${PREFIX:-/usr/local}
destdir=${DESTDIR:-}
build=1
bin_dir=""
with_cron=0
uninstall=0

while [ $# -gt 0 ]; do
  case "$1" in
    --cron) with_cron=1 ;;
    --no-build) build=0 ;;
    --bin-dir)
      [ $# -ge 2 ] || { echo "install.sh: --bin-dir needs a directory" >&2; exit 64; }
      bin_dir=$2; build=0; shift ;;
    --bin-dir=*) bin_dir=${1#--bin-dir=}; build=0 ;;
    --prefix)
      [ $# -ge 2 ] || { echo "install.sh: --prefix needs a directory" >&2; exit 64; }
      prefix=$2; shift ;;
    --prefix=*) prefix=${1#--prefix=} ;;
    --uninstall) uninstall=1 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "install.sh: unknown argument '$1'" >&2; usage >&2; exit 64 ;;
  esac
  shift
done

case "$prefix" in
  /*) ;;
  *) echo "install.sh: PREFIX must be an absolute path, got '$prefix'" >&2; exit 64 ;;
esac
if [[ "$prefix" == *[[:space:]#\\\&]* ]]; then
  echo "install.sh: PREFIX must not contain spaces, '#', '\\' or '&': '$prefix'" >&2
  exit 64
fi
prefix=${prefix%/}
[ -n "$prefix" ] || { echo "install.sh: PREFIX / is not supported; use /usr or /usr/local" >&2; exit 64; }
if [ -n "$destdir" ]; then
  case "$destdir" in
    /*) ;;
    *) destdir=$PWD/$destdir ;;
  esac
  destdir=${destdir%/}
fi

# A real install (empty DESTDIR) writes /etc and /usr/local and creates a user: root only.
if [ -z "$destdir" ] && [ "$(id -u)" -ne 0 ]; then
  echo "install.sh: run as root (or stage into a directory with DESTDIR=...)" >&2
  exit 1
fi

bindir=$destdir$prefix/bin
unitdir=$destdir/etc/systemd/system
crondir=$destdir/etc/cron.d
confdir=$destdir/etc/tgsess
promrulesdir=$destdir/etc/prometheus/rules
sharedir=$destdir$prefix/share/tgsess
units=(tgsess-backup.service tgsess-backup.timer tgsess-prune.service tgsess-prune.timer
  tgsess-check.service tgsess-check.timer tgsess-drill.service tgsess-drill.timer tgsess-bot.service
  tgsess-watch.service)
binaries=(tgsess tgsess-bot)
changed=0
units_changed=0

systemd_running() { [ -z "$destdir" ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; }

# Installs $1 as $2 with mode $3 unless $2 already has exactly that content and mode.
put() {
  local src=$1 dest=$2 mode=$3
  if [ -f "$dest" ] && cmp -s "$src" "$dest" && [ "$(stat -c %a "$dest")" = "${mode#0}" ]; then
    echo "  unchanged  $dest"
    return 1
  fi
  install -D -m "$mode" "$src" "$dest"
  echo "  installed  $dest"
  changed=$((changed + 1))
  return 0
}

# Removes $1 if it exists.
remove() {
  if [ -e "$1" ] || [ -L "$1" ]; then
    rm -f "$1"
    echo "  removed    $1"
    changed=$((changed + 1))
    return 0
  fi
  return 1
}

# The shipped files say /usr/local/bin; a different PREFIX is written into the installed copies.
with_prefix() { sed "s#/usr/local/bin#$prefix/bin#g" "$1"; }

if [ "$uninstall" -eq 1 ]; then
  echo "== uninstalling tgsess from ${destdir:-/}"
  if systemd_running; then
    for unit in "${units[@]}"; do
      case "$unit" in *.timer|tgsess-bot.service|tgsess-watch.service) ;; *) continue ;; esac
      [ -f "$unitdir/$unit" ] || continue
      systemctl disable --now "$unit" >/dev/null 2>&1 && echo "  disabled   $unit" || true
    done
  fi
  for name in "${binaries[@]}"; do remove "$bindir/$name" || true; done
  for unit in "${units[@]}"; do remove "$unitdir/$unit" && units_changed=1 || true; done
  remove "$crondir/tgsess" || true
  remove "$promrulesdir/tgsess.rules.yml" || true
  remove "$sharedir/tgsess.rules.yml" && rmdir "$sharedir" 2>/dev/null || true
  if [ "$units_changed" -eq 1 ] && systemd_running; then
    systemctl daemon-reload
    echo "  ran        systemctl daemon-reload"
  fi
  [ "$changed" -gt 0 ] || echo "nothing to remove: tgsess is not installed in ${destdir:-/}"
  cat <<EOF

Kept (remove by hand if you mean it): the config $confdir/ (tgsess.toml, bot-token),
the deployment and its keys (root in tgsess.toml), the archives (backups_dir), the user tgsess,
and timer state under /var/lib/systemd/timers (systemctl clean --what=state tgsess-*.timer).
EOF
  exit 0
fi

# 1. Binaries.
if [ "$build" -eq 1 ]; then
  . scripts/lib.sh
  echo "== swift build ${TGSESS_RELEASE_FLAGS[*]}"
  swift build "${TGSESS_RELEASE_FLAGS[@]}"
  bin_dir=$(swift build "${TGSESS_RELEASE_FLAGS[@]}" --show-bin-path)
elif [ -z "$bin_dir" ]; then
  bin_dir=$repo/.build/release
fi
[ -x "$bin_dir/tgsess" ] || {
  echo "install.sh: $bin_dir/tgsess is not built; run swift build -c release --static-swift-stdlib, or drop --no-build" >&2
  exit 1
}

echo "== installing tgsess into ${destdir:-/} (prefix $prefix)"
put "$bin_dir/tgsess" "$bindir/tgsess" 0755 || true
if [ -x "$bin_dir/tgsess-bot" ]; then
  put "$bin_dir/tgsess-bot" "$bindir/tgsess-bot" 0755 || true
else
  echo "  skipped    tgsess-bot (not built in $bin_dir); tgsess-bot.service is installed but cannot start"
fi

# 2. systemd units (installed, not enabled).
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for unit in "${units[@]}"; do
  with_prefix "$repo/cron/$unit" >"$tmp/$unit"
  put "$tmp/$unit" "$unitdir/$unit" 0644 && units_changed=1 || true
done

# 3. cron file, only when asked for.
if [ "$with_cron" -eq 1 ]; then
  with_prefix "$repo/cron/tgsess" >"$tmp/tgsess.cron"
  put "$tmp/tgsess.cron" "$crondir/tgsess" 0644 || true
elif [ -f "$crondir/tgsess" ]; then
  echo "  left alone $crondir/tgsess (installed earlier; --uninstall removes it)"
fi

# 4. Prometheus alert rules: into Prometheus's rules directory when the host has one (Debian's
# prometheus package does not create it; make it and run this again to install there).
if [ -d "$promrulesdir" ]; then
  rules=$promrulesdir/tgsess.rules.yml
else
  rules=$sharedir/tgsess.rules.yml
fi
put "$repo/cron/tgsess.rules.yml" "$rules" 0644 || true

# 5. Example config, never over an existing one.
if [ -e "$confdir/tgsess.toml" ]; then
  echo "  kept       $confdir/tgsess.toml (exists; not overwritten)"
else
  install -d -m 0755 "$confdir"
  put "$repo/cron/tgsess.toml" "$confdir/tgsess.toml" 0644 || true
fi

# 6. The system user (real installs only).
if [ -z "$destdir" ]; then
  if getent passwd tgsess >/dev/null; then
    echo "  exists     user tgsess"
  else
    useradd --system --user-group --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin tgsess
    echo "  created    system user tgsess"
    changed=$((changed + 1))
  fi
fi

# 7. systemd picks up changed units.
if [ "$units_changed" -eq 1 ]; then
  if systemd_running; then
    systemctl daemon-reload
    echo "  ran        systemctl daemon-reload"
  elif [ -z "$destdir" ]; then
    echo "  skipped    systemctl daemon-reload (systemd is not running here)"
  fi
fi

if [ "$changed" -eq 0 ]; then
  echo "nothing changed: everything was already installed"
else
  echo "$changed change(s)"
fi

cat <<EOF

Next steps (as root):
 1. Edit /etc/tgsess/tgsess.toml: root (the bot's deployment) and backups_dir. If they are not
    /srv/tgbot and /var/backups/tgsess, change ReadWritePaths= too: systemctl edit tgsess-backup.service
    (and prune, check, drill, bot, watch).
 2. Give the deployment and the archive directory to the user tgsess (run the userbot as tgsess as
    well, or in its group: tgsess writes files 0600):
      install -d -o tgsess -g tgsess -m 0700 /srv/tgbot /var/backups/tgsess
      chown -R tgsess:tgsess /srv/tgbot
      runuser -u tgsess -- $prefix/bin/tgsess init --config /etc/tgsess/tgsess.toml
 3. KEY ESCROW: /srv/tgbot/keys/age-identity.txt is the only key that decrypts the archives, and
    /srv/tgbot/keys/fernet.keys the only key to the secrets in the database (archives hold
    neither). Copy both OFF this host now (a password-manager entry, an offline USB stick; two
    places), and check the copies after the first backup (docs/RUNBOOK.md section 8):
      tgsess keys verify-escrow --identity COPY --fernet-keys COPY --verify-key COPY
    Then remove the identity from the host (shred -u /srv/tgbot/keys/age-identity.txt) or keep it
    where only root can read it, outside the deployment. The backup job only needs the recipient
    (keys/age-recipients.txt); restores then take --identity FILE (docs/RUNBOOK.md).
 4. Bot token for tgsess-bot (root-only; systemd hands the service a copy):
      install -m 0600 -o root -g root /dev/null /etc/tgsess/bot-token && editor /etc/tgsess/bot-token
 5. Monitoring: let tgsess write the node_exporter textfile directory, e.g.
      setfacl -m u:tgsess:rwx /var/lib/prometheus/node-exporter
    and add the alert rules ($rules) under rule_files: in prometheus.yml.
 6. Start the schedule (or use --cron on hosts without systemd; not both):
      systemctl enable --now tgsess-backup.timer tgsess-prune.timer tgsess-check.timer tgsess-drill.timer
      systemctl enable --now tgsess-bot.service
      systemctl enable --now tgsess-watch.service   # a login archived and offsite within seconds
      systemctl start tgsess-backup.service && journalctl -u tgsess-backup.service -n 20
 Runbook (restores, key rotation, metrics, exit codes, drills): docs/RUNBOOK.md
EOF
