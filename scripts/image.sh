#!/usr/bin/env bash
# Builds the vpcni container image offline with podman (FROM scratch: no shell, no package manager) and
# saves it as a docker-archive that containerd imports (`ctr -n k8s.io images import`):
#
#   scripts/image.sh [--release]    -> $CARGO_TARGET_DIR/image/vpcni-<version>.tar, image localhost/vpcni:<version>
#
# The image holds /app/vpcni-ipamd, /app/vpcnictl, /app/cni/{vpcni,vpcni-egress,loopback,portmap} (installed on
# the node by `vpcnictl node init`), iptables and ip6tables (nft backend, with its extensions, which ipamd
# runs) and the shared libraries these need, found with ldd. The plugin is linked statically (glibc crt-static) because it runs
# on the node with the node's C library, whatever its version; the daemon runs inside the image with the
# image's libraries. Debug builds by default: the test suite has built them already, and a release build
# compiles the AWS SDK a second time (numbers in BENCHMARKS.md).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$repo/target}"

profile=debug
cargo_profile=()
if [[ ${1:-} == --release ]]; then
    profile=release
    cargo_profile=(--release)
elif [[ -n ${1:-} ]]; then
    echo "usage: scripts/image.sh [--release]" >&2
    exit 2
fi
for tool in podman ldd; do
    command -v "$tool" >/dev/null || { echo "scripts/image.sh: $tool is missing (apt-get install -y podman)" >&2; exit 1; }
done
for plugin in loopback portmap; do
    [[ -x /usr/lib/cni/$plugin ]] || { echo "scripts/image.sh: /usr/lib/cni/$plugin is missing (apt-get install -y containernetworking-plugins)" >&2; exit 1; }
done
iptables_multi=/usr/sbin/xtables-nft-multi
xtables_modules=/usr/lib/x86_64-linux-gnu/xtables
[[ -x $iptables_multi && -d $xtables_modules ]] || { echo "scripts/image.sh: iptables (nft) is missing (apt-get install -y iptables)" >&2; exit 1; }

version=$(cargo metadata --no-deps --format-version 1 --locked |
    python3 -c 'import json,sys; print(next(p["version"] for p in json.load(sys.stdin)["packages"] if p["name"]=="vpcnictl"))')
tag="localhost/vpcni:$version"

context="$CARGO_TARGET_DIR/image/context"
rm -rf "$context"
mkdir -p "$context/rootfs/app/cni" "$context/rootfs/usr/sbin" "$context/rootfs/etc" "$context/rootfs/tmp"
chmod 1777 "$context/rootfs/tmp"
rootfs="$context/rootfs"

echo "==> building vpcni-ipamd and vpcnictl ($profile)" >&2
cargo build --locked "${cargo_profile[@]}" -p vpcni-ipamd --bin vpcni-ipamd -p vpcnictl --bin vpcnictl
# Copied at once: the build directory may be shared with other checkouts, whose builds replace these files.
install -m 0755 "$CARGO_TARGET_DIR/$profile/vpcni-ipamd" "$rootfs/app/vpcni-ipamd"
install -m 0755 "$CARGO_TARGET_DIR/$profile/vpcnictl" "$rootfs/app/vpcnictl"
"$rootfs/app/vpcnictl" node probe --help >/dev/null ||
    { echo "scripts/image.sh: $CARGO_TARGET_DIR/$profile/vpcnictl is not this checkout's (another build replaced it); run again" >&2; exit 1; }

# An explicit --target keeps the static build's artifacts apart from the shared dynamic ones.
target=x86_64-unknown-linux-gnu
echo "==> building the plugins vpcni and vpcni-egress, statically linked ($profile)" >&2
RUSTFLAGS="-C target-feature=+crt-static" \
    cargo build --locked "${cargo_profile[@]}" --target "$target" -p vpcni-cni --bin vpcni --bin vpcni-egress
plugin="$CARGO_TARGET_DIR/$target/$profile/vpcni"
egress_plugin="$CARGO_TARGET_DIR/$target/$profile/vpcni-egress"
for binary in "$plugin" "$egress_plugin"; do
    if ! ldd "$binary" 2>&1 | grep -q -E 'statically linked|not a dynamic executable'; then
        echo "scripts/image.sh: $binary is not static" >&2
        exit 1
    fi
done


# Binaries, without their debug information (the image ships programs, not symbols).
install -m 0755 "$plugin" "$rootfs/app/cni/vpcni"
install -m 0755 "$egress_plugin" "$rootfs/app/cni/vpcni-egress"
install -m 0755 /usr/lib/cni/loopback /usr/lib/cni/portmap "$rootfs/app/cni/"
strip --strip-debug "$rootfs/app/vpcni-ipamd" "$rootfs/app/vpcnictl" "$rootfs/app/cni/vpcni" "$rootfs/app/cni/vpcni-egress"
install -m 0755 "$iptables_multi" "$rootfs/usr/sbin/xtables-nft-multi"
for name in iptables iptables-save iptables-restore ip6tables ip6tables-save ip6tables-restore; do
    ln -s xtables-nft-multi "$rootfs/usr/sbin/$name"
done
mkdir -p "$rootfs$xtables_modules"
cp -a "$xtables_modules/." "$rootfs$xtables_modules/"
# The AWS SDK talks to EC2 over TLS and trusts the system's roots (apt-get install -y ca-certificates).
mkdir -p "$rootfs/etc/ssl/certs"
cp /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"
# iptables resolves protocol names (-p tcp) through /etc/protocols.
cp /etc/protocols "$rootfs/etc/protocols"
printf 'root:x:0:0:root:/:/sbin/nologin\n' >"$rootfs/etc/passwd"
printf 'root:x:0:\n' >"$rootfs/etc/group"

# Shared libraries of every dynamic program and iptables extension, at the paths ldd resolved them to.
mapfile -t elves < <(find "$rootfs" -type f \( -perm -u+x -o -name '*.so*' \))
for elf in "${elves[@]}"; do
    ldd "$elf" 2>/dev/null | awk '/=> \// {print $3} /^\t\/[^ ]+ \(/ {print $1}'
done | sort -u | while read -r library; do
    mkdir -p "$rootfs$(dirname "$library")"
    cp -L "$library" "$rootfs$library"
done

cat >"$context/Containerfile" <<'CONTAINERFILE'
FROM scratch
COPY rootfs/ /
ENV PATH=/usr/sbin:/app
WORKDIR /
ENTRYPOINT ["/app/vpcnictl"]
CMD ["node", "run"]
CONTAINERFILE

echo "==> podman build $tag" >&2
podman build --quiet --network none --tag "$tag" "$context" >/dev/null
out="$CARGO_TARGET_DIR/image/vpcni-$version.tar"
rm -f "$out"
podman save --quiet --format docker-archive --output "$out" "$tag"
rm -rf "$context"
echo "==> $out ($(du -h "$out" | cut -f1)), image $tag" >&2
echo "$out"
