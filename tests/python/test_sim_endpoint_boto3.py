"""boto3, an EC2 client we did not write, against `vpcnictl sim serve`: EC2's rules over EC2's wire protocol."""

import ipaddress
import urllib.error
import urllib.request

import pytest
from botocore.exceptions import ClientError


def error_code(excinfo):
    return excinfo.value.response["Error"]["Code"]


def new_eni(ec2, subnet, **kwargs):
    return ec2.create_network_interface(SubnetId=subnet, Description="aws-K8S-test", **kwargs)["NetworkInterface"]


def test_run_instance_and_describe(ec2, endpoint):
    _, _, names = endpoint
    vpc = ec2.create_vpc(CidrBlock="172.16.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="172.16.1.0/24", AvailabilityZone="us-west-2b")["Subnet"]
    assert subnet["AvailableIpAddressCount"] == 251
    run = ec2.run_instances(ImageId="ami-1", InstanceType="t3.medium", MinCount=1, MaxCount=1, SubnetId=subnet["SubnetId"])
    instance = run["Instances"][0]
    assert instance["InstanceType"] == "t3.medium"
    assert instance["PrivateIpAddress"] == "172.16.1.4"
    described = ec2.describe_instances(InstanceIds=[instance["InstanceId"]])
    got = described["Reservations"][0]["Instances"][0]
    assert got["NetworkInterfaces"][0]["Attachment"]["DeviceIndex"] == 0
    assert got["State"]["Name"] == "running"
    assert names["node-1"].startswith("i-")
    vpcs = ec2.describe_vpcs()["Vpcs"]
    assert {v["CidrBlock"] for v in vpcs} == {"10.0.0.0/16", "172.16.0.0/16"}
    types = ec2.describe_instance_types(InstanceTypes=["m5.xlarge"])["InstanceTypes"]
    assert types[0]["NetworkInfo"]["MaximumNetworkInterfaces"] == 4
    assert types[0]["NetworkInfo"]["Ipv4AddressesPerInterface"] == 15


def test_attach_enis_up_to_the_limit(ec2, endpoint):
    _, _, names = endpoint
    node, subnet = names["node-1"], names["big"]
    # m5.large: 3 ENIs, the primary is one.
    for device in (1, 2):
        eni = new_eni(ec2, subnet)
        attachment = ec2.attach_network_interface(NetworkInterfaceId=eni["NetworkInterfaceId"], InstanceId=node, DeviceIndex=device)
        assert attachment["AttachmentId"].startswith("eni-attach-")
        ec2.modify_network_interface_attribute(
            NetworkInterfaceId=eni["NetworkInterfaceId"],
            Attachment={"AttachmentId": attachment["AttachmentId"], "DeleteOnTermination": True},
        )
    extra = new_eni(ec2, subnet)
    with pytest.raises(ClientError) as excinfo:
        ec2.attach_network_interface(NetworkInterfaceId=extra["NetworkInterfaceId"], InstanceId=node, DeviceIndex=3)
    assert error_code(excinfo) == "AttachmentLimitExceeded"
    attached = ec2.describe_network_interfaces(Filters=[{"Name": "attachment.instance-id", "Values": [node]}])
    assert len(attached["NetworkInterfaces"]) == 3
    assert all(e["Attachment"]["DeleteOnTermination"] for e in attached["NetworkInterfaces"])


def test_assign_ips_up_to_the_per_eni_limit(ec2, endpoint):
    _, _, names = endpoint
    eni = new_eni(ec2, names["big"])
    eni_id = eni["NetworkInterfaceId"]
    ec2.attach_network_interface(NetworkInterfaceId=eni_id, InstanceId=names["node-1"], DeviceIndex=1)
    # m5.large: 10 addresses per ENI, the ENI's own primary included.
    assigned = ec2.assign_private_ip_addresses(NetworkInterfaceId=eni_id, SecondaryPrivateIpAddressCount=9)
    assert len(assigned["AssignedPrivateIpAddresses"]) == 9
    with pytest.raises(ClientError) as excinfo:
        ec2.assign_private_ip_addresses(NetworkInterfaceId=eni_id, SecondaryPrivateIpAddressCount=1)
    assert error_code(excinfo) == "PrivateIpAddressLimitExceeded"
    first = assigned["AssignedPrivateIpAddresses"][0]["PrivateIpAddress"]
    ec2.unassign_private_ip_addresses(NetworkInterfaceId=eni_id, PrivateIpAddresses=[first])
    again = ec2.assign_private_ip_addresses(NetworkInterfaceId=eni_id, PrivateIpAddresses=[first])
    assert again["AssignedPrivateIpAddresses"][0]["PrivateIpAddress"] == first


def test_assign_aligned_prefixes(ec2, endpoint):
    _, _, names = endpoint
    eni = new_eni(ec2, names["big"])
    eni_id = eni["NetworkInterfaceId"]
    ec2.attach_network_interface(NetworkInterfaceId=eni_id, InstanceId=names["node-1"], DeviceIndex=1)
    got = ec2.assign_private_ip_addresses(NetworkInterfaceId=eni_id, Ipv4PrefixCount=3)["AssignedIpv4Prefixes"]
    assert len(got) == 3
    for item in got:
        prefix = ipaddress.ip_network(item["Ipv4Prefix"])
        assert prefix.prefixlen == 28
        assert int(prefix.network_address) % 16 == 0
    described = ec2.describe_network_interfaces(NetworkInterfaceIds=[eni_id])["NetworkInterfaces"][0]
    assert sorted(p["Ipv4Prefix"] for p in described["Ipv4Prefixes"]) == sorted(p["Ipv4Prefix"] for p in got)
    ec2.unassign_private_ip_addresses(NetworkInterfaceId=eni_id, Ipv4Prefixes=[got[0]["Ipv4Prefix"]])


def test_fragmented_subnet_has_no_cidr_blocks(ec2, endpoint):
    _, _, names = endpoint
    tiny = names["tiny"]  # 10.0.16.0/26: .0/28 holds AWS's reserved addresses, .48/28 the broadcast
    a = new_eni(ec2, tiny)  # primary .4
    taken = ec2.assign_private_ip_addresses(NetworkInterfaceId=a["NetworkInterfaceId"], PrivateIpAddresses=["10.0.16.20", "10.0.16.40"])
    assert len(taken["AssignedPrivateIpAddresses"]) == 2
    with pytest.raises(ClientError) as excinfo:
        ec2.assign_private_ip_addresses(NetworkInterfaceId=a["NetworkInterfaceId"], Ipv4PrefixCount=1)
    assert error_code(excinfo) == "InsufficientCidrBlocks"
    subnet = ec2.describe_subnets(SubnetIds=[tiny])["Subnets"][0]
    assert subnet["AvailableIpAddressCount"] > 0


def test_exhausted_subnet(ec2, endpoint):
    _, _, names = endpoint
    tiny = names["tiny"]
    free = ec2.describe_subnets(SubnetIds=[tiny])["Subnets"][0]["AvailableIpAddressCount"]
    assert free == 64 - 5
    # An ENI takes its own address plus up to 49 more.
    a = new_eni(ec2, tiny, SecondaryPrivateIpAddressCount=49)
    b = new_eni(ec2, tiny, SecondaryPrivateIpAddressCount=free - 50 - 1)
    assert len(a["PrivateIpAddresses"]) + len(b["PrivateIpAddresses"]) == free
    assert ec2.describe_subnets(SubnetIds=[tiny])["Subnets"][0]["AvailableIpAddressCount"] == 0
    with pytest.raises(ClientError) as excinfo:
        new_eni(ec2, tiny)
    assert error_code(excinfo) == "InsufficientFreeAddressesInSubnet"


def test_tags_filters_detach_delete(ec2, endpoint):
    _, _, names = endpoint
    eni = new_eni(
        ec2,
        names["big"],
        TagSpecifications=[{"ResourceType": "network-interface", "Tags": [{"Key": "node.k8s.amazonaws.com/instance_id", "Value": names["node-1"]}]}],
    )
    eni_id = eni["NetworkInterfaceId"]
    ec2.create_tags(Resources=[eni_id], Tags=[{"Key": "cluster.k8s.amazonaws.com/name", "Value": "lab"}])
    found = ec2.describe_network_interfaces(
        Filters=[
            {"Name": "tag-key", "Values": ["node.k8s.amazonaws.com/instance_id"]},
            {"Name": "tag:cluster.k8s.amazonaws.com/name", "Values": ["lab"]},
            {"Name": "status", "Values": ["available"]},
        ]
    )["NetworkInterfaces"]
    assert [e["NetworkInterfaceId"] for e in found] == [eni_id]
    attachment = ec2.attach_network_interface(NetworkInterfaceId=eni_id, InstanceId=names["node-1"], DeviceIndex=1)["AttachmentId"]
    with pytest.raises(ClientError) as excinfo:
        ec2.delete_network_interface(NetworkInterfaceId=eni_id)
    assert error_code(excinfo) == "InvalidNetworkInterface.InUse"
    ec2.detach_network_interface(AttachmentId=attachment)
    ec2.delete_network_interface(NetworkInterfaceId=eni_id)
    with pytest.raises(ClientError) as excinfo:
        ec2.describe_network_interfaces(NetworkInterfaceIds=[eni_id])
    assert error_code(excinfo) == "InvalidNetworkInterfaceID.NotFound"


def test_pagination(ec2, endpoint):
    _, _, names = endpoint
    for _ in range(7):
        new_eni(ec2, names["big"])
    paginator = ec2.get_paginator("describe_network_interfaces")
    pages = list(paginator.paginate(PaginationConfig={"PageSize": 5}))
    assert len(pages) == 2
    assert sum(len(p["NetworkInterfaces"]) for p in pages) == 8  # seven and the node's primary


def post(url, body, content_type="application/x-www-form-urlencoded"):
    request = urllib.request.Request(url, data=body, headers={"Content-Type": content_type}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


@pytest.mark.parametrize(
    "body, code",
    [
        (b"Action=LaunchMissiles&Version=2016-11-15", "InvalidAction"),
        (b"Version=2016-11-15", "MissingAction"),
        (b"Action=CreateNetworkInterface&Version=2016-11-15", "MissingParameter"),
        (b"Action=AssignPrivateIpAddresses&NetworkInterfaceId=eni-1&SecondaryPrivateIpAddressCount=lots", "InvalidParameterValue"),
        (b"Action=AssignPrivateIpAddresses&NetworkInterfaceId=eni-1", "InvalidParameterCombination"),
        (b"Action=DescribeNetworkInterfaces&Filter.1.Name=status", "MissingParameter"),
        (b"Action=DescribeNetworkInterfaces&MaxResults=1", "InvalidParameterValue"),
        (b"Action=CreateVpc&CidrBlock=not-a-cidr", "InvalidParameterValue"),
        (b"\x00\xff\xfe garbage &&&===", "MissingAction"),
        (b"Action=AttachNetworkInterface&NetworkInterfaceId=eni-nope&InstanceId=i-nope&DeviceIndex=1", "InvalidInstanceID.NotFound"),
    ],
)
def test_bad_requests_get_ec2_error_xml(endpoint, body, code):
    url, _, _ = endpoint
    status, text = post(url, body)
    assert status == 400, text
    assert f"<Code>{code}</Code>" in text, text
    assert text.startswith('<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error>')
    assert "<RequestID>" in text


def test_oversized_body_is_refused_and_the_server_lives_on(ec2, endpoint):
    url, _, _ = endpoint
    status, _ = post(url, b"Action=DescribeVpcs&Junk=" + b"a" * (2 * 1024 * 1024))
    assert status in (400, 413)
    assert ec2.describe_vpcs()["Vpcs"]


def test_imds_v2_answers_for_the_default_instance(endpoint):
    _, imds, names = endpoint
    token_request = urllib.request.Request(
        imds + "/latest/api/token", method="PUT", headers={"X-aws-ec2-metadata-token-ttl-seconds": "60"}
    )
    token = urllib.request.urlopen(token_request, timeout=5).read().decode()

    def get(path, with_token=True):
        headers = {"X-aws-ec2-metadata-token": token} if with_token else {}
        request = urllib.request.Request(imds + "/latest/meta-data/" + path, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, ""

    assert get("instance-id") == (200, names["node-1"])
    assert get("instance-id", with_token=False)[0] == 401
    assert get("local-ipv4") == (200, "10.0.0.10")
    status, macs = get("network/interfaces/macs/")
    mac = macs.strip().rstrip("/")
    assert get(f"network/interfaces/macs/{mac}/device-number") == (200, "0")
    assert get(f"network/interfaces/macs/{mac}/subnet-ipv4-cidr-block") == (200, "10.0.0.0/20")
    assert get(f"network/interfaces/macs/{mac}/vpc-ipv4-cidr-blocks") == (200, "10.0.0.0/16")
    assert get(f"network/interfaces/macs/{mac}/ipv4-prefix")[0] == 404
    assert get("no/such/path")[0] == 404
