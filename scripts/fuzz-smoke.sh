#!/usr/bin/env bash
# Fuzz smoke: builds every cargo-fuzz target in fuzz/ and runs each one briefly from its checked-in seed
# corpus. Fails only when a target crashes (a panic, a failed property, an overflow, a sanitizer report) or
# hangs; the inputs it finds are thrown away. docs/reliability.md has the long runs.
#
# Deterministic: a fixed seed and a fixed number of runs per target, so the same build runs the same inputs
# on every machine; the time cap only shortens a run on a very slow machine, it never fails one.
#
#   VPCNI_FUZZ_TARGET_DIR  build directory (default: $CARGO_TARGET_DIR/fuzz, else fuzz/target)
#   VPCNI_FUZZ_RUNS        runs per target (default: a number per target, a few seconds each on a 2-core
#                          machine)
#   VPCNI_FUZZ_TARGETS     targets to run (default: all of them)
#
# Needs the nightly toolchain (rustup toolchain install nightly); installs cargo-fuzz from crates.io if it
# is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

log() { printf '==> %s\n' "$*" >&2; }

if ! rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    log "the fuzzers need the nightly toolchain: rustup toolchain install nightly"
    exit 1
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    log "installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

if [[ -n ${CARGO_TARGET_DIR:-} ]]; then
    target_dir="${VPCNI_FUZZ_TARGET_DIR:-$CARGO_TARGET_DIR/fuzz}"
else
    target_dir="${VPCNI_FUZZ_TARGET_DIR:-$repo/fuzz/target}"
fi
# Runs per target, about 5 s each on a 2-core machine (the targets differ in speed by ten times).
declare -A default_runs=(
    [checkpoint]=200000 [cni_input]=60000 [ec2_query]=25000
    [imds_text]=150000 [ipamd_env]=60000 [rpc_requests]=250000
)
read -r -a targets <<<"${VPCNI_FUZZ_TARGETS:-$(cargo +nightly fuzz list --fuzz-dir fuzz | tr '\n' ' ')}"

log "building ${#targets[@]} fuzz targets in $target_dir"
cargo +nightly fuzz build --fuzz-dir fuzz --target-dir "$target_dir" -O
triple="$(rustc +nightly -vV | sed -n 's/^host: //p')"
bin_dir="$target_dir/$triple/release"

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
failed=()
for target in "${targets[@]}"; do
    mkdir -p "$scratch/$target"
    runs="${VPCNI_FUZZ_RUNS:-${default_runs[$target]:-50000}}"
    log "fuzz $target ($runs runs)"
    # New inputs go to the scratch directory (the first one); the seed corpus is only read.
    # -timeout: one input taking 30 s is a hang; -detect_leaks=0: a leak is not a crash.
    if ! "$bin_dir/$target" "$scratch/$target" "fuzz/corpus/$target" \
        -seed=1 -runs="$runs" -max_total_time=120 -timeout=30 -detect_leaks=0 \
        -artifact_prefix="$scratch/$target-" -print_final_stats=1 >"$scratch/$target.log" 2>&1; then
        tail -n 40 "$scratch/$target.log" >&2
        mkdir -p fuzz/artifacts/"$target"
        cp "$scratch/$target"-* fuzz/artifacts/"$target"/ 2>/dev/null || true
        log "$target crashed; the input is in fuzz/artifacts/$target/ (reproduce: cargo +nightly fuzz run $target fuzz/artifacts/$target/<file>)"
        failed+=("$target")
    else
        grep -E '^stat::number_of_executed_units|^Done' "$scratch/$target.log" >&2 || true
    fi
done

if ((${#failed[@]})); then
    log "fuzz targets crashed: ${failed[*]}"
    exit 1
fi
log "fuzz smoke passed: ${#targets[@]} targets"
