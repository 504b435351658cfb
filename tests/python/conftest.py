"""Fixtures: a real `vpcnictl sim serve` process on loopback, and boto3 clients pointed at it."""

import os
import socket
import subprocess
import tempfile
import textwrap

import boto3
import pytest
from botocore.config import Config

VPCNICTL = os.environ.get("VPCNICTL")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


TOPOLOGY = textwrap.dedent(
    """
    [vpc]
    cidr = "10.0.0.0/16"

    [[subnets]]
    name = "big"
    cidr = "10.0.0.0/20"
    az = "us-west-2a"

    [[subnets]]
    name = "tiny"
    cidr = "10.0.16.0/26"
    az = "us-west-2a"

    [[instances]]
    name = "node-1"
    type = "m5.large"
    subnet = "big"
    primary_ip = "10.0.0.10"
    default = true

    [sim.throttle]
    enabled = false
    [sim.throttle.non_mutating]
    capacity = 100.0
    refill_per_second = 20.0
    [sim.throttle.mutating]
    capacity = 200.0
    refill_per_second = 5.0
    [sim.throttle.resource_intensive]
    capacity = 50.0
    refill_per_second = 5.0
    """
)


@pytest.fixture
def endpoint():
    """Starts the simulator with a small topology; yields (ec2 url, imds url, {name: id})."""
    assert VPCNICTL, "set VPCNICTL to the vpcnictl binary (scripts/test.sh does)"
    with tempfile.TemporaryDirectory() as tmp:
        topology = os.path.join(tmp, "topology.toml")
        with open(topology, "w") as f:
            f.write(TOPOLOGY)
        ec2_port, imds_port = free_port(), free_port()
        proc = subprocess.Popen(
            [VPCNICTL, "sim", "serve", "--topology", topology,
             "--ec2-listen", f"127.0.0.1:{ec2_port}", "--imds-listen", f"127.0.0.1:{imds_port}"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        names = {}
        try:
            for line in proc.stdout:
                words = line.split()
                if words[:1] == ["instance"] or words[:1] == ["subnet"]:
                    names[words[1]] = words[2]
                if line.strip() == "ready":
                    break
            else:
                raise AssertionError("sim serve exited: " + proc.stderr.read())
            yield f"http://127.0.0.1:{ec2_port}", f"http://127.0.0.1:{imds_port}", names
        finally:
            proc.terminate()
            proc.wait(timeout=10)


@pytest.fixture
def ec2(endpoint):
    url, _, _ = endpoint
    return boto3.client(
        "ec2",
        endpoint_url=url,
        region_name="us-west-2",
        aws_access_key_id="test",
        aws_secret_access_key="test",
        config=Config(retries={"max_attempts": 1}, connect_timeout=5, read_timeout=10),
    )
