#!/usr/bin/env bash
# Renders deploy/vpcni.yaml from charts/vpcni with its default values (CRD included), with real Helm.
# tests/python/test_chart.py fails when the two differ; run this after changing the chart.
set -euo pipefail
cd "$(dirname "$0")/.."
helm=$(scripts/helm.sh)
{
    echo "# vpcni for kube-system, rendered from charts/vpcni with default values by scripts/render-manifest.sh."
    echo "# Do not edit: change the chart and render again. Install: kubectl apply -f deploy/vpcni.yaml"
    "$helm" template vpcni charts/vpcni --namespace kube-system --include-crds
} >deploy/vpcni.yaml.tmp
mv deploy/vpcni.yaml.tmp deploy/vpcni.yaml
echo deploy/vpcni.yaml
