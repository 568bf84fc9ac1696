"""End-to-end tests of the Fleet Manager REST API, driven through the public
Python client `dataikuapi.fmclient.FMClientAWS` for everything the client
can do, and through raw HTTP only for what it can't express (status codes,
malformed bodies, missing auth).

Every test runs once per backend (SQLite, PostgreSQL) through the
session-scoped `fm_server` fixture, and names its objects with labels unique
to the test, so tests don't depend on each other or on their order.
"""

import json
import re
import secrets
import string
import time
from contextlib import contextmanager
from types import SimpleNamespace

import pytest
from dataikuapi.fm.future import FMFuture
from dataikuapi.fm.instances import FMInstanceEncryptionMode, FMNodeType
from dataikuapi.fm.instancesettingstemplates import (
    FMSetupAction,
    FMSetupActionAddJDBCDriverDatabaseType,
    FMSetupActionStage,
    FMSetupActionType,
)
from dataikuapi.fm.tenant import FMCloudAuthentication
from dataikuapi.fm.virtualnetworks import FMHTTPSStrategy
from dataikuapi.utils import DataikuException

ROLE_ARN = "arn:aws:iam::123456789012:role/fm-e2e"
OTHER_ROLE_ARN = "arn:aws:iam::210987654321:role/fm-e2e-other"
STARTUP_PROFILE_ARN = "arn:aws:iam::123456789012:instance-profile/fm-startup"
RUNTIME_PROFILE_ARN = "arn:aws:iam::123456789012:instance-profile/fm-runtime"
SSH_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE2eTestKeyForFleetManagerE2E fm@e2e"
LICENSE = json.dumps({"content": {"licensee": {"company": "e2e"}, "expiresOn": "20991231"}})
# Where ?useDefaultValues=true puts a network when the server has no
# [network_defaults] configured (the fixture gives it none).
DEFAULT_REGION, DEFAULT_VPC, DEFAULT_SUBNET = "us-east-1", "vpc-local", "subnet-local"


# --------------------------------------------------------------------------
# helpers


def access_key_id() -> str:
    alphabet = string.ascii_uppercase + string.digits
    return "AKIA" + "".join(secrets.choice(alphabet) for _ in range(16))


def secret_access_key() -> str:
    return secrets.token_hex(20)  # 40 characters


def raises_api_error(error_type: str):
    """The public client turns an HTTP error into DataikuException
    "<errorType>: <message>"."""
    return pytest.raises(DataikuException, match=r"^%s: " % re.escape(error_type))


def error_body(resp, status: int, error_type: str) -> dict:
    """Checks an error response: status, JSON body {errorType, message}."""
    assert resp.status_code == status, (resp.status_code, resp.text)
    assert resp.headers.get("content-type", "").startswith("application/json"), resp.headers
    body = resp.json()
    assert body.get("errorType") == error_type, body
    assert isinstance(body.get("message"), str) and body["message"], body
    return body


def state_of(client) -> dict:
    """Everything the tenant holds, read through the public client."""
    return {
        "accounts": sorted((a.account_data for a in client.list_cloud_accounts()), key=lambda d: d["id"]),
        "networks": sorted((n.vn_data for n in client.list_virtual_networks()), key=lambda d: d["id"]),
        "templates": sorted((t.ist_data for t in client.list_instance_templates()), key=lambda d: d["id"]),
        "instances": sorted((i.instance_data for i in client.list_instances()), key=lambda d: d["id"]),
        "credentials": client.get_cloud_credentials().cloud_credentials,
        "tags": client.get_cloud_tags().tags,
    }


@contextmanager
def nothing_written(client):
    """A refused write must leave every object as it was (nothing half-written)."""
    before = state_of(client)
    yield
    assert state_of(client) == before


def new_network(client, label, **kw):
    creator = (
        client.new_virtual_network_creator(label)
        .with_region(kw.get("region", "eu-west-3"))
        .with_vpc(kw.get("vpc", "vpc-0a1b2c3d"), kw.get("subnet", "subnet-0a1b2c3d"))
        .with_auto_create_security_groups()
    )
    if "account" in kw:
        creator = creator.with_account(cloud_account=kw["account"])
    return creator.create()


def new_template(client, label):
    return (
        client.new_instance_template_creator(label)
        .with_setup_actions([FMSetupAction.add_authorized_key(SSH_KEY)])
        .create()
    )


def an_image_id(client) -> str:
    return client.list_instance_images()[-1]["id"]


def new_instance(client, label, template_id, network_id, image_id, node_type="design"):
    return (
        client.new_instance_creator(label, template_id, network_id, image_id)
        .with_dss_node_type(node_type)
        .create()
    )


def assert_finished(future, target_id):
    """A quick operation comes back finished: the future already holds its result."""
    assert future.job_id, future.state
    assert future.state.get("hasResult") is True, future.state
    started = time.monotonic()
    result = future.wait_for_result()
    # wait_for_result must not have needed its 5 s poll
    assert time.monotonic() - started < 4.0
    assert result == {"id": target_id, "deleted": True}, result
    return result


@pytest.fixture
def placement(client, label):
    """A template, a network and an image to put instances in."""
    return SimpleNamespace(
        template=new_template(client, label("tmpl")),
        network=new_network(client, label("vn")),
        image_id=an_image_id(client),
    )


# --------------------------------------------------------------------------
# tenant: cloud credentials


def test_keypair_credentials_are_saved_and_the_secret_is_never_returned(client, api):
    key_id, secret = access_key_id(), secret_access_key()
    creds = client.get_cloud_credentials()
    creds.set_authentication(FMCloudAuthentication.aws_keypair(key_id, secret))
    creds.save()

    again = client.get_cloud_credentials().cloud_credentials
    assert again["awsAuthenticationMode"] == "KEYPAIR"
    assert again["awsAccessKeyId"] == key_id
    assert again["hasAwsSecretAccessKey"] is True
    assert "awsSecretAccessKey" not in again
    assert secret not in api.get("/cloud-credentials").text


def test_saving_credentials_read_back_keeps_the_stored_secret(client):
    key_id = access_key_id()
    creds = client.get_cloud_credentials()
    creds.set_authentication(FMCloudAuthentication.aws_keypair(key_id, secret_access_key()))
    creds.save()

    # what a GET returns has no secret; saving it back must keep the stored one
    read_back = client.get_cloud_credentials()
    read_back.set_aws_cmk("arn:aws:kms:eu-west-3:123456789012:key/e2e")
    read_back.save()

    again = client.get_cloud_credentials().cloud_credentials
    assert again["awsAuthenticationMode"] == "KEYPAIR"
    assert again["awsAccessKeyId"] == key_id
    assert again["hasAwsSecretAccessKey"] is True
    assert again["awsCMKId"] == "arn:aws:kms:eu-west-3:123456789012:key/e2e"


def test_iam_role_credentials_drop_the_previous_keypair(client):
    creds = client.get_cloud_credentials()
    creds.set_authentication(FMCloudAuthentication.aws_keypair(access_key_id(), secret_access_key()))
    creds.save()

    creds = client.get_cloud_credentials()
    creds.set_authentication(FMCloudAuthentication.aws_iam_role(ROLE_ARN))
    creds.save()

    again = client.get_cloud_credentials().cloud_credentials
    assert again["awsAuthenticationMode"] == "IAM_ROLE"
    assert again["awsIAMRoleARN"] == ROLE_ARN
    assert again["hasAwsSecretAccessKey"] is False
    assert "awsAccessKeyId" not in again


def test_same_as_fm_credentials_need_nothing_else(client):
    creds = client.get_cloud_credentials()
    creds.set_authentication(FMCloudAuthentication.aws_iam_role(ROLE_ARN))
    creds.save()

    creds = client.get_cloud_credentials()
    creds.set_authentication(FMCloudAuthentication.aws_same_as_fm())
    creds.save()

    again = client.get_cloud_credentials().cloud_credentials
    assert again["awsAuthenticationMode"] == "SAME_AS_FM"
    assert "awsIAMRoleARN" not in again
    assert "awsAccessKeyId" not in again
    assert again["hasAwsSecretAccessKey"] is False


def test_static_license_is_stored_as_a_json_string(client):
    creds = client.get_cloud_credentials()
    creds.set_authentication(FMCloudAuthentication.aws_same_as_fm())
    creds.set_static_license(license_string=LICENSE)
    creds.save()

    again = client.get_cloud_credentials().cloud_credentials
    assert again["licenseMode"] == "STATIC"
    assert json.loads(again["license"]) == json.loads(LICENSE)


def test_auto_update_license_token_is_write_only(client, api):
    token = "tok-" + secrets.token_hex(16)
    creds = client.get_cloud_credentials()
    creds.set_authentication(FMCloudAuthentication.aws_same_as_fm())
    creds.set_automatically_updated_license(token)
    creds.save()

    again = client.get_cloud_credentials().cloud_credentials
    assert again["licenseMode"] == "AUTO_UPDATE"
    assert again["hasLicenseToken"] is True
    assert "licenseToken" not in again
    assert token not in api.get("/cloud-credentials").text


def test_invalid_credentials_are_refused_and_nothing_changes(client):
    with nothing_written(client):
        creds = client.get_cloud_credentials()
        creds.set_authentication(FMCloudAuthentication.aws_keypair("not-a-key", secret_access_key()))
        with raises_api_error("InvalidInput") as e:
            creds.save()
        assert "awsAccessKeyId" in str(e.value)

        creds = client.get_cloud_credentials()
        creds.set_authentication(FMCloudAuthentication.aws_iam_role("arn:aws:iam::12:user/nope"))
        with raises_api_error("InvalidInput") as e:
            creds.save()
        assert "awsIAMRoleARN" in str(e.value)


# --------------------------------------------------------------------------
# tenant: cloud tags


def test_cloud_tags_round_trip_through_the_msg_envelope(client, label):
    tags = client.get_cloud_tags()
    assert isinstance(tags.tags, dict)
    value = label("tag")
    tags.tags.clear()
    tags.tags.update({"team": "data-platform", "e2e": value})
    tags.save()

    assert client.get_cloud_tags().tags == {"team": "data-platform", "e2e": value}

    tags = client.get_cloud_tags()
    del tags.tags["team"]
    tags.save()
    assert client.get_cloud_tags().tags == {"e2e": value}


def test_reserved_cloud_tag_keys_are_refused(client):
    with nothing_written(client):
        tags = client.get_cloud_tags()
        tags.tags["aws:owner"] = "me"
        with raises_api_error("InvalidInput") as e:
            tags.save()
        assert "aws:" in str(e.value)


# --------------------------------------------------------------------------
# cloud accounts


def test_cloud_account_same_as_fm_is_created_listed_and_read(client, label):
    name = label("acct")
    acct = (
        client.new_cloud_account_creator(name)
        .with_description("made by the e2e suite")
        .same_as_fm()
        .create()
    )
    data = acct.account_data
    assert acct.id and data["id"] == acct.id
    assert data["label"] == name
    assert data["description"] == "made by the e2e suite"
    assert data["awsAuthenticationMode"] == "DEFAULT_INSTANCE_CREDENTIALS"
    assert data["nbNetworks"] == 0

    assert acct.id in [a.id for a in client.list_cloud_accounts()]
    assert client.get_cloud_account(acct.id).account_data == data


def test_cloud_account_with_iam_role(client, label):
    acct = client.new_cloud_account_creator(label("acct")).with_iam_role(ROLE_ARN).create()
    data = client.get_cloud_account(acct.id).account_data
    assert data["awsAuthenticationMode"] == "IAM_ROLE"
    assert data["awsIAMRoleARN"] == ROLE_ARN
    assert data["hasAwsSecretAccessKey"] is False


def test_cloud_account_with_keypair_never_returns_the_secret(client, api, label):
    key_id, secret = access_key_id(), secret_access_key()
    acct = client.new_cloud_account_creator(label("acct")).with_keypair(key_id, secret).create()
    assert "awsSecretAccessKey" not in acct.account_data
    data = client.get_cloud_account(acct.id).account_data
    assert data["awsAuthenticationMode"] == "KEYPAIR"
    assert data["awsAccessKeyId"] == key_id
    assert data["hasAwsSecretAccessKey"] is True
    assert "awsSecretAccessKey" not in data
    assert secret not in api.get(f"/cloud-accounts/{acct.id}").text
    assert secret not in api.get("/cloud-accounts").text


def test_cloud_account_changes_are_saved(client, label):
    acct = client.new_cloud_account_creator(label("acct")).with_keypair(access_key_id(), secret_access_key()).create()

    # a save without the secret keeps it
    acct = client.get_cloud_account(acct.id)
    acct.account_data["label"] = label("renamed")
    acct.account_data["description"] = "renamed"
    acct.save()
    data = client.get_cloud_account(acct.id).account_data
    assert data["label"] == label("renamed")
    assert data["description"] == "renamed"
    assert data["awsAuthenticationMode"] == "KEYPAIR"
    assert data["hasAwsSecretAccessKey"] is True

    # switching to a role forgets the keypair
    acct.set_iam_role(OTHER_ROLE_ARN)
    acct.save()
    data = client.get_cloud_account(acct.id).account_data
    assert data["awsAuthenticationMode"] == "IAM_ROLE"
    assert data["awsIAMRoleARN"] == OTHER_ROLE_ARN
    assert data["hasAwsSecretAccessKey"] is False
    assert "awsAccessKeyId" not in data

    acct = client.get_cloud_account(acct.id)
    acct.set_same_as_fm()
    acct.save()
    data = client.get_cloud_account(acct.id).account_data
    assert data["awsAuthenticationMode"] == "DEFAULT_INSTANCE_CREDENTIALS"
    assert "awsIAMRoleARN" not in data


def test_invalid_cloud_accounts_are_refused(client, label):
    with nothing_written(client):
        with raises_api_error("InvalidInput") as e:
            client.new_cloud_account_creator(label("acct")).with_iam_role("not-an-arn").create()
        assert "awsIAMRoleARN" in str(e.value)
        with raises_api_error("InvalidInput"):
            client.new_cloud_account_creator(label("acct")).with_keypair("AKIASHORT", secret_access_key()).create()
        with raises_api_error("InvalidInput"):
            client.new_cloud_account_creator("   ").same_as_fm().create()

    acct = client.new_cloud_account_creator(label("acct")).same_as_fm().create()
    with nothing_written(client):
        acct.set_keypair(access_key_id(), "too-short")
        with raises_api_error("InvalidInput"):
            acct.save()


def test_cloud_account_is_deleted_through_a_future(client, label):
    acct = client.new_cloud_account_creator(label("acct")).same_as_fm().create()
    future = acct.delete()
    assert_finished(future, acct.id)
    with raises_api_error("NotFound"):
        client.get_cloud_account(acct.id)
    assert acct.id not in [a.id for a in client.list_cloud_accounts()]


def test_cloud_account_used_by_a_network_cannot_be_deleted(client, api, label):
    acct = client.new_cloud_account_creator(label("acct")).same_as_fm().create()
    stale = client.get_cloud_account(acct.id)  # read before the network exists: nbNetworks 0
    vn = new_network(client, label("vn"), account=acct)
    assert vn.vn_data["accountId"] == acct.id

    fresh = client.get_cloud_account(acct.id)
    assert fresh.account_data["nbNetworks"] == 1
    # the client itself refuses, from nbNetworks, before calling the server
    with pytest.raises(Exception, match="in use"):
        fresh.delete()

    with nothing_written(client):
        # a stale handle gets as far as the server, which refuses
        with raises_api_error("Conflict"):
            stale.delete()
        body = error_body(api.delete(f"/cloud-accounts/{acct.id}"), 409, "Conflict")
        assert acct.id in body["message"]

    # once the network is gone, the account can go
    assert_finished(vn.delete(), vn.id)
    assert_finished(client.get_cloud_account(acct.id).delete(), acct.id)


# --------------------------------------------------------------------------
# virtual networks


def test_virtual_network_is_created_with_explicit_vpc(client, label):
    name = label("vn")
    vn = (
        client.new_virtual_network_creator(name)
        .with_region("eu-west-3")
        .with_vpc("vpc-0abc123", "subnet-0abc123", "subnet-0def456")
        .with_auto_create_security_groups()
        .with_internet_access_mode("EGRESS_ONLY")
        .create()
    )
    data = vn.vn_data
    assert vn.id and data["id"] == vn.id
    assert data["label"] == name
    assert data["mode"] == "EXISTING_MONOTENANT"
    assert data["awsRegion"] == "eu-west-3"
    assert data["awsVpcId"] == "vpc-0abc123"
    assert data["awsSubnetId"] == "subnet-0abc123"
    assert data["awsSecondSubnetId"] == "subnet-0def456"
    assert data["awsAutoCreateSecurityGroups"] is True
    assert data["internetAccessMode"] == "EGRESS_ONLY"
    assert data["nbInstances"] == 0

    assert vn.id in [n.id for n in client.list_virtual_networks()]
    assert client.get_virtual_network(vn.id).vn_data == data


def test_virtual_network_with_default_values_gets_fms_own_placement(client, label):
    vn = client.new_virtual_network_creator(label("vn")).with_default_values().create()
    data = client.get_virtual_network(vn.id).vn_data
    assert data["awsRegion"] == DEFAULT_REGION
    assert data["awsVpcId"] == DEFAULT_VPC
    assert data["awsSubnetId"] == DEFAULT_SUBNET


def test_virtual_network_with_given_security_groups(client, label):
    vn = (
        client.new_virtual_network_creator(label("vn"))
        .with_region("eu-west-1")
        .with_vpc("vpc-1", "subnet-1")
        .with_aws_security_groups("sg-0a1", "sg-0b2")
        .create()
    )
    data = client.get_virtual_network(vn.id).vn_data
    assert data["awsAutoCreateSecurityGroups"] is False
    assert data["awsSecurityGroups"] == ["sg-0a1", "sg-0b2"]


def test_virtual_network_without_placement_is_refused(client, label):
    with nothing_written(client):
        with raises_api_error("InvalidInput") as e:
            client.new_virtual_network_creator(label("vn")).create()
        assert "awsRegion" in str(e.value)
        with raises_api_error("InvalidInput") as e:
            client.new_virtual_network_creator(label("vn")).with_region("eu-west-3").with_vpc(
                "not-a-vpc", "subnet-1"
            ).create()
        assert "awsVpcId" in str(e.value)
        with raises_api_error("InvalidInput"):
            client.new_virtual_network_creator(label("vn")).with_region("Paris").with_vpc(
                "vpc-1", "subnet-1"
            ).create()
        with raises_api_error("InvalidInput") as e:
            client.new_virtual_network_creator(label("vn")).with_default_values().with_account(
                cloud_account_id="ca-doesnotexist"
            ).create()
        assert "accountId" in str(e.value)


def test_virtual_network_settings_are_saved(client, label):
    vn = new_network(client, label("vn"))
    vn.set_https_strategy(FMHTTPSStrategy.lets_encrypt("ops@example.com"))
    vn.set_dns_strategy(True, aws_private_ip_zone53_id="Z0PRIVATE123", aws_public_ip_zone53_id="Z0PUBLIC456")
    vn.set_fleet_management(True, event_server="events-node", deployer_management="CENTRAL_DEPLOYER", govern_server="govern-node")
    vn.set_assign_public_ip(False)
    vn.save()  # the client PUTs, then GETs into vn_data

    for data in (vn.vn_data, client.get_virtual_network(vn.id).vn_data):
        assert data["httpsStrategy"] == "LETSENCRYPT"
        assert data["httpStrategy"] == "REDIRECT"
        assert data["contactMail"] == "ops@example.com"
        assert data["dnsStrategy"] == "VN_SPECIFIC_CLOUD_DNS_SERVICE"
        assert data["awsRoute53PrivateIPZoneId"] == "Z0PRIVATE123"
        assert data["awsRoute53PublicIPZoneId"] == "Z0PUBLIC456"
        assert data["managedNodesDirectory"] is True
        assert data["eventServerNodeLabel"] == "events-node"
        assert data["nodesDirectoryDeployerMode"] == "CENTRAL_DEPLOYER"
        assert data["governServerNodeLabel"] == "govern-node"
        assert data["awsAssignPublicIP"] is False

    vn.set_https_strategy(FMHTTPSStrategy.self_signed(False))
    vn.set_dns_strategy(False)
    vn.set_fleet_management(False)
    vn.set_assign_public_ip(True)
    vn.save()
    data = client.get_virtual_network(vn.id).vn_data
    assert data["httpsStrategy"] == "SELF_SIGNED"
    assert data["httpStrategy"] == "DISABLE"
    assert data["dnsStrategy"] == "NONE"
    assert data["awsRoute53PrivateIPZoneId"] is None
    assert data["managedNodesDirectory"] is False
    assert data["awsAssignPublicIP"] is True


def test_virtual_network_refuses_invalid_changes(client, label):
    vn = new_network(client, label("vn"))
    with nothing_written(client):
        vn.vn_data["awsVpcId"] = "vpc-0other"
        with raises_api_error("InvalidInput") as e:
            vn.save()
        assert "awsVpcId" in str(e.value)

        vn = client.get_virtual_network(vn.id)
        vn.set_https_strategy(FMHTTPSStrategy.lets_encrypt("not-an-email"))
        with raises_api_error("InvalidInput") as e:
            vn.save()
        assert "contactMail" in str(e.value)

        vn = client.get_virtual_network(vn.id)
        vn.set_dns_strategy(True)  # no zone at all
        with raises_api_error("InvalidInput"):
            vn.save()


def test_virtual_network_is_deleted_through_a_future(client, label):
    vn = new_network(client, label("vn"))
    assert_finished(vn.delete(), vn.id)
    with raises_api_error("NotFound"):
        client.get_virtual_network(vn.id)
    assert vn.id not in [n.id for n in client.list_virtual_networks()]


def test_virtual_network_used_by_an_instance_cannot_be_deleted(client, api, label, placement):
    inst = new_instance(client, label("inst"), placement.template.id, placement.network.id, placement.image_id)
    assert client.get_virtual_network(placement.network.id).vn_data["nbInstances"] == 1

    with nothing_written(client):
        with raises_api_error("Conflict") as e:
            placement.network.delete()
        assert "Conflict" in str(e.value)
        body = error_body(api.delete(f"/virtual-networks/{placement.network.id}"), 409, "Conflict")
        assert placement.network.id in body["message"]

    assert_finished(inst.delete(), inst.id)
    assert client.get_virtual_network(placement.network.id).vn_data["nbInstances"] == 0
    assert_finished(placement.network.delete(), placement.network.id)


# --------------------------------------------------------------------------
# instance templates


def all_kinds_of_setup_actions():
    return [
        FMSetupAction.add_authorized_key(SSH_KEY),
        FMSetupAction.run_ansible_task(FMSetupActionStage.after_dss_startup, "- debug:\n    msg: hello\n"),
        FMSetupAction.install_jdbc_driver(
            FMSetupActionAddJDBCDriverDatabaseType.mysql,
            "https://downloads.example.com/mysql-connector.tar.gz",
            paths_in_archive=["mysql-connector/*.jar"],
            http_headers={"X-Token": "abc"},
            datadir_subdirectory="lib/jdbc/mysql",
        ),
        FMSetupAction.install_system_packages(["git", "htop"]),
        FMSetupAction.setup_advanced_security(basic_headers=True, hsts=True),
        FMSetupAction.setup_k8s_and_spark(),
        FMSetupAction.install_deprecated_python(install_py38=True),
    ]


SECRET_PARAMS = {"INSTALL_JDBC_DRIVER": ("password", "headers"), "ADD_SSH_KEY": ("sshKey",)}


def masked(action):
    """An action's params as FM returns them: secret params masked."""
    params = dict(action["params"])
    for key in SECRET_PARAMS.get(action["type"], ()):
        if params.get(key) is not None:
            params[key] = "********"
    return params


def test_instance_template_keeps_its_setup_actions_and_settings(client, api, label):
    secret = secret_access_key()
    key_id = access_key_id()
    actions = all_kinds_of_setup_actions()
    name = label("tmpl")
    tmpl = (
        client.new_instance_template_creator(name)
        .with_setup_actions(actions)
        .with_aws_keypair("fm-e2e-keypair")
        .with_startup_instance_profile(STARTUP_PROFILE_ARN)
        .with_runtime_instance_profile(RUNTIME_PROFILE_ARN)
        .with_restrict_aws_metadata_server_access(False)
        .with_keypair_aws_api_access_mode(key_id, "INLINE_ENCRYPTED", aws_secret_access_key=secret)
        .with_license(license_string=LICENSE)
        .create()
    )
    assert tmpl.id
    for data in (tmpl.ist_data, client.get_instance_template(tmpl.id).ist_data):
        assert data["label"] == name
        assert [a["type"] for a in data["setupActions"]] == [a["type"] for a in actions]
        assert [a["params"] for a in data["setupActions"]] == [masked(a) for a in actions]
        assert all(a["enabled"] is True for a in data["setupActions"])
        assert data["awsKeyPairName"] == "fm-e2e-keypair"
        assert data["startupInstanceProfileArn"] == STARTUP_PROFILE_ARN
        assert data["runtimeInstanceProfileArn"] == RUNTIME_PROFILE_ARN
        assert data["restrictAwsMetadataServerAccess"] is False
        assert data["dataikuAwsAPIAccessMode"] == "KEYPAIR"
        assert data["dataikuAwsKeypairStorageMode"] == "INLINE_ENCRYPTED"
        assert data["dataikuAwsAccessKeyId"] == key_id
        assert data["hasDataikuAwsSecretAccessKey"] is True
        assert "dataikuAwsSecretAccessKey" not in data
        assert json.loads(data["license"]) == json.loads(LICENSE)
        assert data["nbInstances"] == 0
    assert secret not in api.get(f"/instance-settings-templates/{tmpl.id}").text
    assert tmpl.id in [t.id for t in client.list_instance_templates()]


def test_instance_template_with_secrets_manager_keypair(client, label):
    tmpl = (
        client.new_instance_template_creator(label("tmpl"))
        .with_keypair_aws_api_access_mode(
            access_key_id(),
            "AWS_SECRETS_MANAGER",
            aws_secret_access_key_aws_secret_name="fm/e2e/secret",
            aws_secrets_manager_region="eu-west-1",
        )
        .create()
    )
    data = client.get_instance_template(tmpl.id).ist_data
    assert data["dataikuAwsKeypairStorageMode"] == "AWS_SECRETS_MANAGER"
    assert data["dataikuAwsSecretAccessKeyAwsSecretName"] == "fm/e2e/secret"
    assert data["awsSecretsManagerRegion"] == "eu-west-1"
    assert data["hasDataikuAwsSecretAccessKey"] is False


def test_instance_template_with_default_api_access(client, label):
    tmpl = client.new_instance_template_creator(label("tmpl")).with_default_aws_api_access_mode().create()
    data = client.get_instance_template(tmpl.id).ist_data
    assert data["dataikuAwsAPIAccessMode"] == "NONE"
    assert data["setupActions"] == []
    assert data["restrictAwsMetadataServerAccess"] is True


def test_instance_template_setup_actions_are_added_and_toggled(client, label):
    tmpl = (
        client.new_instance_template_creator(label("tmpl"))
        .with_setup_actions([FMSetupAction.add_authorized_key(SSH_KEY)])
        .with_keypair_aws_api_access_mode(access_key_id(), "INLINE_ENCRYPTED", aws_secret_access_key=secret_access_key())
        .create()
    )
    tmpl.add_setup_action(FMSetupAction.setup_k8s_and_spark())
    tmpl.add_setup_action(FMSetupAction.run_ansible_task(FMSetupActionStage.before_install, "- ping:"))
    tmpl.save()  # PUT, then GET into ist_data
    assert [a["type"] for a in tmpl.ist_data["setupActions"]] == [
        "ADD_AUTHORIZED_KEY",
        "SETUP_K8S_AND_SPARK",
        "RUN_ANSIBLE_TASKS",
    ]
    # the stored secret survives a save that doesn't carry it
    assert tmpl.ist_data["hasDataikuAwsSecretAccessKey"] is True

    tmpl.set_setup_action_enabled_by_index(0, False)
    tmpl.save()
    data = client.get_instance_template(tmpl.id).ist_data
    assert [a["enabled"] for a in data["setupActions"]] == [False, True, True]

    tmpl = client.get_instance_template(tmpl.id)
    tmpl.set_setup_action_enabled_by_action_type(FMSetupActionType.RUN_ANSIBLE_TASKS, 0, False)
    tmpl.set_setup_action_enabled_by_index(0, True)
    tmpl.save()
    data = client.get_instance_template(tmpl.id).ist_data
    assert [a["enabled"] for a in data["setupActions"]] == [True, True, False]


def test_invalid_setup_actions_are_refused(client, api, label):
    with nothing_written(client):
        with raises_api_error("InvalidInput") as e:
            client.new_instance_template_creator(label("tmpl")).with_setup_actions(
                [FMSetupAction.setup_k8s_and_spark(), FMSetupAction.add_authorized_key("hello")]
            ).create()
        assert "setupActions[1]" in str(e.value)
        assert "ADD_AUTHORIZED_KEY" in str(e.value)

        with raises_api_error("InvalidInput") as e:
            client.new_instance_template_creator(label("tmpl")).with_setup_actions(
                [FMSetupAction.install_jdbc_driver(FMSetupActionAddJDBCDriverDatabaseType.oracle, "ftp://x/d.jar")]
            ).create()
        assert "url" in str(e.value)

        with raises_api_error("InvalidInput"):
            client.new_instance_template_creator(label("tmpl")).with_setup_actions(
                [
                    FMSetupAction.install_jdbc_driver(
                        FMSetupActionAddJDBCDriverDatabaseType.mysql,
                        "https://x/d.jar",
                        datadir_subdirectory="../../etc",
                    )
                ]
            ).create()

        with raises_api_error("InvalidInput"):
            client.new_instance_template_creator(label("tmpl")).with_setup_actions(
                [FMSetupAction.install_system_packages(["git; rm -rf /"])]
            ).create()

        # what the client's enums can't produce, raw
        for bad in (
            {"type": "RUN_ANSIBLE_TASKS", "params": {"stage": "whenever", "ansibleTasks": "- ping:"}},
            {"type": "MAKE_COFFEE", "params": {}},
            {"type": "UPDATE_DSS_PORT", "params": {"dssPort": "eighty"}},
        ):
            r = api.post("/instance-settings-templates", json={"label": label("tmpl"), "setupActions": [bad]})
            error_body(r, 400, "InvalidInput")

    tmpl = new_template(client, label("tmpl"))
    with nothing_written(client):
        tmpl.add_setup_action(FMSetupAction.add_authorized_key("not a key"))
        with raises_api_error("InvalidInput") as e:
            tmpl.save()
        assert "setupActions[1]" in str(e.value)


def test_instance_template_inline_keypair_needs_a_secret(client, label):
    with nothing_written(client):
        creator = client.new_instance_template_creator(label("tmpl")).with_keypair_aws_api_access_mode(
            access_key_id(), "INLINE_ENCRYPTED", aws_secret_access_key="x"
        )
        del creator.data["dataikuAwsSecretAccessKey"]
        with raises_api_error("InvalidInput") as e:
            creator.create()
        assert "dataikuAwsSecretAccessKey" in str(e.value)


def test_instance_template_is_deleted_through_a_future(client, label):
    tmpl = new_template(client, label("tmpl"))
    assert_finished(tmpl.delete(), tmpl.id)
    with raises_api_error("NotFound"):
        client.get_instance_template(tmpl.id)
    assert tmpl.id not in [t.id for t in client.list_instance_templates()]


def test_instance_template_used_by_an_instance_cannot_be_deleted(client, api, label, placement):
    inst = new_instance(client, label("inst"), placement.template.id, placement.network.id, placement.image_id)
    assert client.get_instance_template(placement.template.id).ist_data["nbInstances"] == 1
    with nothing_written(client):
        with raises_api_error("Conflict"):
            placement.template.delete()
        error_body(api.delete(f"/instance-settings-templates/{placement.template.id}"), 409, "Conflict")
    assert_finished(inst.delete(), inst.id)
    assert_finished(placement.template.delete(), placement.template.id)


# --------------------------------------------------------------------------
# images


def test_images_list_at_least_two_node_versions(client):
    images = client.list_instance_images()
    assert isinstance(images, list) and len(images) >= 2
    ids = [i["id"] for i in images]
    assert len(set(ids)) == len(ids)
    for image in images:
        assert re.fullmatch(r"dss-\d+\.\d+\.\d+-default", image["id"]), image
        assert isinstance(image.get("label"), str) and image["label"], image


# --------------------------------------------------------------------------
# instances


def test_instance_is_created_with_all_options(client, label, placement):
    name = label("inst")
    inst = (
        client.new_instance_creator(name, placement.template.id, placement.network.id, placement.image_id)
        .with_dss_node_type("automation")
        .with_cloud_instance_type("m5.xlarge")
        .with_data_volume_options(
            data_volume_type="gp3",
            data_volume_size=100,
            data_volume_size_max=500,
            data_volume_IOPS=3000,
            data_volume_encryption=FMInstanceEncryptionMode.DEFAULT_KEY,
            data_volume_throughput=250,
        )
        .with_aws_root_volume_options(aws_root_volume_size=60, aws_root_volume_type="gp3", aws_root_volume_IOPS=3000)
        .with_cloud_tags({"team": "data", "env": "e2e"})
        .with_fm_tags(["e2e", "automation"])
        .create()
    )
    assert inst.id
    data = inst.instance_data
    expected = {
        "label": name,
        "instanceSettingsTemplateId": placement.template.id,
        "virtualNetworkId": placement.network.id,
        "imageId": placement.image_id,
        "dssNodeType": "automation",
        "cloudInstanceType": "m5.xlarge",
        "dataVolumeType": "gp3",
        "dataVolumeSizeGB": 100,
        "dataVolumeSizeMaxGB": 500,
        "dataVolumeIOPS": 3000,
        "dataVolumeThroughput": 250,
        "volumesEncryption": "DEFAULT_KEY",
        "awsRootVolumeSizeGB": 60,
        "awsRootVolumeType": "gp3",
        "awsRootVolumeIOPS": 3000,
        "cloudTags": {"team": "data", "env": "e2e"},
        "fmTags": ["e2e", "automation"],
    }
    assert {k: data.get(k) for k in expected} == expected
    assert data["id"] == inst.id

    assert inst.id in [i.id for i in client.list_instances()]
    assert client.get_instance(inst.id).instance_data == data


def test_instance_node_types_follow_the_clients_enum(client, label, placement):
    for node_type in FMNodeType:
        inst = (
            client.new_instance_creator(label(node_type.value), placement.template.id, placement.network.id, placement.image_id)
            .with_dss_node_type(node_type)
            .create()
        )
        assert client.get_instance(inst.id).instance_data["dssNodeType"] == node_type.value


def test_instance_custom_encryption_needs_a_key(client, label, placement):
    with nothing_written(client):
        with raises_api_error("InvalidInput") as e:
            client.new_instance_creator(
                label("inst"), placement.template.id, placement.network.id, placement.image_id
            ).with_data_volume_options(data_volume_encryption=FMInstanceEncryptionMode.CUSTOM).create()
        assert "volumesEncryptionKey" in str(e.value)
    inst = (
        client.new_instance_creator(label("inst"), placement.template.id, placement.network.id, placement.image_id)
        .with_data_volume_options(
            data_volume_encryption=FMInstanceEncryptionMode.CUSTOM,
            data_volume_encryption_key="arn:aws:kms:eu-west-3:123456789012:key/e2e",
        )
        .create()
    )
    data = client.get_instance(inst.id).instance_data
    assert data["volumesEncryption"] == "CUSTOM"
    assert data["volumesEncryptionKey"] == "arn:aws:kms:eu-west-3:123456789012:key/e2e"


def test_instance_snapshot_policy_and_elastic_ip_are_saved(client, label, placement):
    inst = new_instance(client, label("inst"), placement.template.id, placement.network.id, placement.image_id)
    created = client.get_instance(inst.id).instance_data
    inst.set_automated_snapshots(True, 24, keep=7)
    inst.set_elastic_ip(True, "eipalloc-0abc123")
    inst.save()  # the client PUTs, then GETs into instance_data

    for data in (inst.instance_data, client.get_instance(inst.id).instance_data):
        assert data["enableAutomatedSnapshot"] is True
        assert data["automatedSnapshotPeriod"] == 24
        assert data["automatedSnapshotRetention"] == 7
        assert data["awsAssignElasticIP"] is True
        assert data["awsElasticIPAllocationId"] == "eipalloc-0abc123"
        assert data["createdAt"] == created["createdAt"]
        assert data["updatedAt"] >= created["updatedAt"]
        assert data["label"] == created["label"]


def test_instance_refuses_invalid_changes(client, label, placement):
    inst = new_instance(client, label("inst"), placement.template.id, placement.network.id, placement.image_id)
    other_vn = new_network(client, label("vn2"))
    with nothing_written(client):
        inst.set_automated_snapshots(True, 0)
        with raises_api_error("InvalidInput") as e:
            inst.save()
        assert "automatedSnapshotPeriod" in str(e.value)

        inst = client.get_instance(inst.id)
        inst.set_elastic_ip(True, "not-an-allocation")
        with raises_api_error("InvalidInput"):
            inst.save()

        inst = client.get_instance(inst.id)
        inst.set_custom_certificate("this is not a certificate")
        with raises_api_error("InvalidInput") as e:
            inst.save()
        assert "sslCertificatePEM" in str(e.value)

        inst = client.get_instance(inst.id)
        inst.instance_data["virtualNetworkId"] = other_vn.id
        with raises_api_error("InvalidInput") as e:
            inst.save()
        assert "virtualNetworkId" in str(e.value)

        inst = client.get_instance(inst.id)
        inst.instance_data["id"] = "inst-someoneelse"
        with raises_api_error("InvalidInput"):
            inst.save()


def test_instance_needs_existing_template_network_and_image(client, label, placement):
    with nothing_written(client):
        cases = [
            ("ist-doesnotexist", placement.network.id, placement.image_id, "instanceSettingsTemplateId"),
            (placement.template.id, "vn-doesnotexist", placement.image_id, "virtualNetworkId"),
            (placement.template.id, placement.network.id, "dss-0.0.1-default", "imageId"),
        ]
        for template_id, network_id, image_id, field in cases:
            with raises_api_error("InvalidInput") as e:
                new_instance(client, label("inst"), template_id, network_id, image_id)
            assert field in str(e.value)
        with raises_api_error("InvalidInput") as e:
            client.new_instance_creator(
                label("inst"), placement.template.id, placement.network.id, placement.image_id
            ).with_cloud_instance_type("huge machine").create()
        assert "cloudInstanceType" in str(e.value)
        with raises_api_error("InvalidInput") as e:
            client.new_instance_creator(
                label("inst"), placement.template.id, placement.network.id, placement.image_id
            ).with_data_volume_options(data_volume_size=500, data_volume_size_max=100).create()
        assert "dataVolumeSizeMaxGB" in str(e.value)


def test_instance_is_deleted_through_a_future(client, api, label, placement):
    inst = new_instance(client, label("inst"), placement.template.id, placement.network.id, placement.image_id)
    future = inst.delete()
    assert_finished(future, inst.id)
    with raises_api_error("NotFound"):
        client.get_instance(inst.id)
    error_body(api.get(f"/instances/{inst.id}"), 404, "NotFound")
    assert inst.id not in [i.id for i in client.list_instances()]
    # deleting it again: it is gone
    with raises_api_error("NotFound"):
        inst.delete()


# --------------------------------------------------------------------------
# futures


def test_future_of_a_finished_operation_reads_the_same_every_way(client, label):
    tmpl = new_template(client, label("tmpl"))
    future = tmpl.delete()
    assert future.state["hasResult"] is True
    job_id = future.job_id

    by_id = FMFuture(client, job_id)
    peeked = by_id.peek_state()
    assert peeked["jobId"] == job_id
    assert peeked["hasResult"] is True
    assert peeked["result"] == {"id": tmpl.id, "deleted": True}
    got = by_id.get_state()
    assert got["jobId"] == job_id and got["hasResult"] is True
    assert by_id.has_result() is True
    assert by_id.get_result() == {"id": tmpl.id, "deleted": True}

    fresh = FMFuture(client, job_id, state={"jobId": job_id})  # no result yet: must ask the server
    assert fresh.wait_for_result() == {"id": tmpl.id, "deleted": True}


def test_aborting_a_finished_future_is_harmless(client, label):
    tmpl = new_template(client, label("tmpl"))
    future = tmpl.delete()
    assert_finished(future, tmpl.id)

    FMFuture(client, future.job_id).abort()
    state = FMFuture(client, future.job_id).peek_state()
    assert state["hasResult"] is True
    assert state["result"] == {"id": tmpl.id, "deleted": True}
    assert state.get("aborted") in (False, None)
    # and the deletion it made stays made
    with raises_api_error("NotFound"):
        client.get_instance_template(tmpl.id)


def test_unknown_future_is_not_found(client, api):
    with raises_api_error("NotFound"):
        FMFuture(client, "fut-doesnotexist").get_state()
    with raises_api_error("NotFound"):
        FMFuture(client, "fut-doesnotexist").abort()
    error_body(api.get("/futures/fut-doesnotexist"), 404, "NotFound")
    error_body(api.get("/futures/fut-doesnotexist", params={"peek": "true"}), 404, "NotFound")
    error_body(api.delete("/futures/fut-doesnotexist"), 404, "NotFound")


def test_future_list_shows_recent_operations(client, api, label):
    tmpl = new_template(client, label("tmpl"))
    future = tmpl.delete()
    recent = api.list("/futures?limit=20")
    assert future.job_id in [f["jobId"] for f in recent]
    error_body(api.get("/futures", params={"limit": "many"}), 400, "InvalidInput")
    error_body(api.get(f"/futures/{future.job_id}", params={"peek": "maybe"}), 400, "InvalidInput")


# --------------------------------------------------------------------------
# authentication


def test_no_credentials_are_refused_with_401(client, api, label):
    # nothing is readable without a key, not even which paths exist
    for path in ("/instances", "/cloud-credentials", "/futures/fut-x", "/api/public/no/such/path"):
        r = api.get(path, auth=None)
        error_body(r, 401, "Unauthorized")
        assert "Basic" in r.headers.get("www-authenticate", ""), r.headers
    with nothing_written(client):
        error_body(api.post("/cloud-accounts", auth=None, json={"label": label("acct")}), 401, "Unauthorized")
        error_body(api.put("/cloud-tags", auth=None, json={"stolen": "yes"}), 401, "Unauthorized")


def test_wrong_secret_is_refused_with_401(client, api, fm_server, make_client, label):
    error_body(api.get("/instances", auth=(fm_server.key_id, "wrong-secret")), 401, "Unauthorized")
    error_body(api.get("/instances", auth=("no-such-key", fm_server.secret)), 401, "Unauthorized")
    error_body(api.get("/instances", auth=(fm_server.key_id, "")), 401, "Unauthorized")
    r = api.get("/instances", auth=None, headers={"Authorization": "Bearer " + fm_server.secret})
    error_body(r, 401, "Unauthorized")
    intruder = make_client(secret="wrong-secret")
    with raises_api_error("Unauthorized"):
        intruder.list_instances()
    with nothing_written(client):
        with raises_api_error("Unauthorized"):
            intruder.new_cloud_account_creator(label("acct")).same_as_fm().create()


def test_unknown_tenant_is_not_found(make_client):
    with raises_api_error("NotFound") as e:
        make_client(tenant_id="no-such-tenant").list_instances()
    assert "no-such-tenant" in str(e.value)


# --------------------------------------------------------------------------
# bad input (raw requests)


def test_unknown_instance_is_404(api):
    body = error_body(api.get("/instances/inst-doesnotexist"), 404, "NotFound")
    assert "inst-doesnotexist" in body["message"]
    error_body(api.get("/instances/inst-doesnotexist/actions/delete"), 404, "NotFound")
    error_body(api.get("/virtual-networks/vn-doesnotexist"), 404, "NotFound")
    error_body(api.get("/instance-settings-templates/ist-doesnotexist"), 404, "NotFound")
    error_body(api.get("/cloud-accounts/ca-doesnotexist"), 404, "NotFound")


def test_ids_with_path_characters_are_refused(client, api):
    with nothing_written(client):
        for path in (
            "/instances/..%2F..%2Fetc",
            "/instances/..%2F..%2Fetc/actions/delete",
            "/instances/a%20b",
            "/virtual-networks/..%2Fx",
            "/instance-settings-templates/..%2Fx",
            "/cloud-accounts/%2Fetc%2Fpasswd",
            "/futures/..%2F..%2Fetc",
        ):
            error_body(api.get(path), 400, "InvalidInput")
        error_body(api.delete("/virtual-networks/..%2Fx"), 400, "InvalidInput")
        error_body(api.put("/instances/..%2F..%2Fetc", json={}), 400, "InvalidInput")


def instance_body(placement, label, **extra):
    body = {
        "label": label("raw"),
        "instanceSettingsTemplateId": placement.template.id,
        "virtualNetworkId": placement.network.id,
        "imageId": placement.image_id,
    }
    body.update(extra)
    return body


def test_malformed_json_is_refused(client, api, label, placement):
    with nothing_written(client):
        body = error_body(api.post("/instances", data='{"label": "x",', headers={"Content-Type": "application/json"}), 400, "InvalidInput")
        assert "JSON" in body["message"]
        error_body(api.post("/instances", data="not json at all"), 400, "InvalidInput")
        error_body(api.post("/instances", data=""), 400, "InvalidInput")
        error_body(api.post("/instances", json=[1, 2, 3]), 400, "InvalidInput")
        error_body(api.put("/cloud-tags", data='{"a": '), 400, "InvalidInput")
        error_body(api.put("/cloud-credentials", data="{]"), 400, "InvalidInput")


def test_wrong_field_type_names_the_field(client, api, label, placement):
    with nothing_written(client):
        body = error_body(
            api.post("/instances", json=instance_body(placement, label, dataVolumeSizeGB="big")), 400, "InvalidInput"
        )
        assert "dataVolumeSizeGB" in body["message"]
        body = error_body(
            api.post("/instances", json=instance_body(placement, label, fmTags="e2e")), 400, "InvalidInput"
        )
        assert "fmTags" in body["message"]
        body = error_body(
            api.post("/virtual-networks", json={"label": label("vn"), "awsAssignPublicIP": "yes"}), 400, "InvalidInput"
        )
        assert "awsAssignPublicIP" in body["message"]
        body = error_body(api.put("/cloud-tags", json={"team": 7}), 400, "InvalidInput")
        assert "team" in body["message"]
        body = error_body(api.post("/instances", json={"imageId": placement.image_id}), 400, "InvalidInput")
        assert "label" in body["message"]


def test_unknown_enum_value_is_refused(client, api, label, placement):
    with nothing_written(client):
        body = error_body(
            api.post("/instances", json=instance_body(placement, label, dssNodeType="spaceship")), 400, "InvalidInput"
        )
        assert "dssNodeType" in body["message"]
        assert "spaceship" in body["message"]
        body = error_body(
            api.post("/cloud-accounts", json={"label": label("acct"), "awsAuthenticationMode": "TELEPATHY"}),
            400,
            "InvalidInput",
        )
        assert "awsAuthenticationMode" in body["message"]
        body = error_body(
            api.post(
                "/virtual-networks",
                params={"useDefaultValues": "true"},
                json={"label": label("vn"), "httpsStrategy": "MAGIC"},
            ),
            400,
            "InvalidInput",
        )
        assert "httpsStrategy" in body["message"]


def test_body_over_one_mebibyte_is_413(client, api, label, placement):
    with nothing_written(client):
        big = instance_body(placement, label, description="x" * (1024 * 1024 + 10))
        body = error_body(api.post("/instances", json=big), 413, "PayloadTooLarge")
        assert "limit" in body["message"]


def test_non_json_content_type_is_415(client, api, label, placement):
    with nothing_written(client):
        payload = json.dumps(instance_body(placement, label))
        error_body(api.post("/instances", data=payload, headers={"Content-Type": "text/plain"}), 415, "UnsupportedMediaType")
        error_body(
            api.put("/cloud-tags", data='{"a": "b"}', headers={"Content-Type": "application/x-www-form-urlencoded"}),
            415,
            "UnsupportedMediaType",
        )
    # application/json with parameters is JSON
    r = api.post("/instances", data=payload, headers={"Content-Type": "application/json; charset=utf-8"})
    assert r.status_code == 200, r.text


def test_unknown_paths_and_methods_answer_json_errors(api):
    error_body(api.get("/no-such-collection"), 404, "NotFound")
    error_body(api.get("/api/public/nothing-here"), 404, "NotFound")
    error_body(api.request("PATCH", "/instances"), 405, "MethodNotAllowed")
    error_body(api.delete("/images"), 405, "MethodNotAllowed")


def test_openapi_document_lists_the_public_paths(api):
    r = api.get("/api/public/openapi.json")
    assert r.status_code == 200, r.text
    doc = r.json()
    paths = doc.get("paths", {})
    for p in (
        "/tenants/{tenantId}/instances",
        "/tenants/{tenantId}/instances/{instanceId}/actions/delete",
        "/tenants/{tenantId}/futures/{jobId}",
    ):
        assert any(k.endswith(p) for k in paths), (p, sorted(paths))
