#!/usr/bin/env bash
# Packaging checks, run by .ci/run after `cargo test` (which built the debug
# binary): builds the Debian package from that binary (no second, release
# build), asserts what is inside it, and verifies the systemd unit with
# systemd-analyze. Run alone: `bash packaging/check.sh`.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
start=$(date +%s)

# cargo-deb: pinned (3.8.0 builds on rustc 1.85+; `--profile dev` is still a
# warning there, see below).
CARGO_DEB_VERSION=3.8.0
if ! cargo deb --version 2>/dev/null | grep -q "^cargo-deb $CARGO_DEB_VERSION\$"; then
  echo "-- installing cargo-deb $CARGO_DEB_VERSION"
  # (without CARGO_TARGET_DIR: its build goes to a temporary dir, not the tests' target)
  env -u CARGO_TARGET_DIR cargo install cargo-deb --locked --version "=$CARGO_DEB_VERSION" --quiet
fi
# systemd-analyze (Debian's systemd package; installing it starts nothing),
# strip (binutils, for cargo deb --strip), dpkg-deb
need=()
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)
command -v strip >/dev/null 2>&1 || need+=(binutils)
command -v dpkg-deb >/dev/null 2>&1 || need+=(dpkg)
if [ ${#need[@]} -gt 0 ]; then
  echo "-- installing ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

fail() { echo "packaging: FAIL: $*" >&2; exit 1; }

WORK=$(mktemp -d /tmp/fuwa-pkg.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

# The package is made from the debug binary `cargo test` just built: the
# layout, scripts and unit are what is checked here; a release package is
# `cargo deb` (see docs/operations.md).
# (.ci/run's `cargo test --workspace` just built it; building it again here
# with `-p fuwa` could unify features differently and rebuild dependencies.)
BIN=$CARGO_TARGET_DIR/debug/fuwa
if [ ! -x "$BIN" ]; then
  echo "-- $BIN missing: building it"
  cargo build -p fuwa --bin fuwa --quiet
fi
echo "-- packaging $BIN ($(date -u -r "$BIN" +%FT%TZ))"
cargo deb -p fuwa --no-build --profile dev --strip --fast --quiet -o "$WORK/" >/dev/null
DEB=$(ls "$WORK"/fuwa_*.deb)
echo "-- built $(basename "$DEB") ($(du -h "$DEB" | cut -f1))"

# 1. contents: every expected path, with its mode
dpkg -c "$DEB" > "$WORK/contents"
expect() { # MODE PATH
  grep -Eq -- "^$1 (root/root|0/0) +[0-9]+ [0-9-]+ [0-9:]+ \./$2\$" "$WORK/contents" ||
    fail "$(basename "$DEB") has no $2 owned by root with mode $1; it has:
$(cat "$WORK/contents")"
}
expect -rwxr-xr-x usr/bin/fuwa
expect -rw-r----- etc/fuwa/fuwa.toml
expect -rw-r--r-- usr/lib/systemd/system/fuwa.service
expect -rw-r--r-- usr/share/doc/fuwa/README.md
expect -rw-r--r-- usr/share/doc/fuwa/copyright
for f in conf/*.toml; do expect -rw-r--r-- "usr/share/doc/fuwa/examples/$(basename "$f")"; done

# 2. control: dependencies, conffile, maintainer scripts
dpkg-deb -e "$DEB" "$WORK/DEBIAN"
dpkg-deb -f "$DEB" Depends | grep -q 'adduser' || fail "Depends lacks adduser (the postinst uses it)"
grep -qx /etc/fuwa/fuwa.toml "$WORK/DEBIAN/conffiles" || fail "/etc/fuwa/fuwa.toml is not a conffile"
for s in postinst prerm postrm; do
  [ -x "$WORK/DEBIAN/$s" ] || fail "no executable $s"
  sh -n "$WORK/DEBIAN/$s" || fail "$s: syntax error"
done
grep -q 'adduser --system --group' "$WORK/DEBIAN/postinst" || fail "postinst does not create the fuwa user"
grep -q 'install -d -o fuwa -g fuwa -m 0750 /var/lib/fuwa' "$WORK/DEBIAN/postinst" || fail "postinst does not create /var/lib/fuwa"
grep -q 'deb-systemd-helper enable fuwa.service' "$WORK/DEBIAN/postinst" || fail "postinst does not enable fuwa.service"

# 3. the files themselves
mkdir "$WORK/root"
dpkg-deb -x "$DEB" "$WORK/root"
R=$WORK/root
cmp -s "$R/usr/lib/systemd/system/fuwa.service" packaging/systemd/fuwa.service || fail "packaged unit differs from packaging/systemd/fuwa.service"
cmp -s "$R/etc/fuwa/fuwa.toml" packaging/debian/fuwa.toml || fail "packaged config differs from packaging/debian/fuwa.toml"
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
"$R/usr/bin/fuwa" --version | grep -qx "fuwa $version" || fail "packaged binary is not fuwa $version"
"$R/usr/bin/fuwa" check -c "$R/etc/fuwa/fuwa.toml" >/dev/null || fail "the packaged /etc/fuwa/fuwa.toml does not pass fuwa check"

# 4. the unit: ExecStart/ExecReload run the packaged binary with arguments it
# accepts, and systemd-analyze verifies it. verify insists that the binary
# exists, so a copy points /usr/bin/fuwa at the extracted one (the path itself
# was asserted in 1.).
unit=$R/usr/lib/systemd/system/fuwa.service
grep -q '^ExecStart=/usr/bin/fuwa run -c /etc/fuwa/fuwa.toml --data-dir /var/lib/fuwa$' "$unit" || fail "unexpected ExecStart"
grep -q '^ExecReload=/bin/kill -HUP \$MAINPID$' "$unit" || fail "no SIGHUP ExecReload"
grep -q '^Type=notify$' "$unit" || fail "not Type=notify"
# the same arguments (config and data dir moved into the extracted tree);
# clap parses them all before it acts on --help
"$R/usr/bin/fuwa" run -c "$R/etc/fuwa/fuwa.toml" --data-dir "$WORK/data" --help >/dev/null ||
  fail "fuwa does not accept ExecStart's arguments"
"$R/usr/bin/fuwa" check -c "$R/etc/fuwa/fuwa.toml" >/dev/null || fail "ExecReload's check fails"
mkdir "$WORK/unit"
sed "s|/usr/bin/fuwa|$R/usr/bin/fuwa|g" "$unit" > "$WORK/unit/fuwa.service"
# verify exits 0 on unknown keys and bad values ("ignoring"): any word about
# our unit is a failure (lines about other units on the machine are not ours)
verify_rc=0
systemd-analyze verify "$WORK/unit/fuwa.service" > "$WORK/verify" 2>&1 || verify_rc=$?
if [ "$verify_rc" -ne 0 ] || grep -q 'fuwa\.service' "$WORK/verify"; then
  fail "systemd-analyze verify (exit $verify_rc):
$(cat "$WORK/verify")"
fi
# hardening: systemd's exposure score (0 best, 10 worst) must stay <= 2.0
systemd-analyze security --offline=yes --threshold=20 "$WORK/unit/fuwa.service" > "$WORK/security" 2>&1 ||
  fail "exposure above 2.0: $(tail -1 "$WORK/security")"
echo "-- systemd-analyze security: $(grep -o 'Overall exposure level.*' "$WORK/security")"

echo "packaging: ok in $(( $(date +%s) - start ))s"
