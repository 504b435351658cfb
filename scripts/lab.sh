#!/usr/bin/env bash
# Runs vpcni's lab (VPC in a box) on this machine: installs the few Debian packages it needs if missing,
# builds the workspace (the same build scripts/test.sh makes, so a test run afterwards reuses it), then runs
# `vpcnictl lab <arguments>` — `demo` when none are given. Needs root (network namespaces, iptables).
#
#   scripts/lab.sh                 # the guided tour: brings a lab up if none is, then tells the story
#   scripts/lab.sh up --nodes 3    # any `vpcnictl lab` subcommand: up, pods, status, exec, demo, down
#   scripts/lab.sh down            # removes everything the lab made
#
#   CARGO_TARGET_DIR  build directory (default: target/ in the clone)
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$repo/target}"

log() { printf '==> %s\n' "$*" >&2; }

if [[ $(id -u) -ne 0 ]]; then
    log "the lab creates network namespaces and iptables rules: run this as root (sudo $0 $*)"
    exit 1
fi

packages=(iproute2 iptables iputils-ping curl)
missing=()
for pkg in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
if ((${#missing[@]})); then
    log "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null; then
    log "cargo not found: install Rust first (https://rustup.rs: curl -sSf https://sh.rustup.rs | sh), then rerun"
    exit 1
fi

vpcnictl="$CARGO_TARGET_DIR/debug/vpcnictl"
if [[ ! -x $vpcnictl || ! -x $CARGO_TARGET_DIR/debug/vpcni-ipamd || ! -x $CARGO_TARGET_DIR/debug/vpcni ]]; then
    log "building (the first build takes about 11 minutes on 2 cores, most of it the AWS SDK; later ones seconds)"
fi
cargo build --workspace --all-targets --locked --quiet

exec "$vpcnictl" lab "${@:-demo}"
