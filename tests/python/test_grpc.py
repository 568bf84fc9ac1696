"""The public gRPC API through grpcio: stubs generated from `proto/` by
grpcio-tools when the suite starts, against the real server binary. Health
answers without credentials; reflection lists FM's services; a call
without a key is UNAUTHENTICATED and a viewer's change PERMISSION_DENIED
(and audited as refused); a network, a template and an instance made
through the API, once per request id, checked only with `validate_only`,
updated through a field mask with an etag (a stale one ABORTED); instances
listed page by page and provisioned through an Operation and
`WaitOperation`, all under the caller's name in the audit log; cloud
accounts (their secret never read back), the image catalog, and an
instance's snapshots and backups through their own services; watchers of
the instances' changes (resumed from the last event seen) and of an
operation until it is done."""

import base64
import importlib
import subprocess
import sys
import time
import uuid
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from google.protobuf import field_mask_pb2, struct_pb2
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from test_fmclient import an_image_id, new_instance, new_network, new_template

PROTO_ROOT = Path(__file__).resolve().parents[2] / "proto" / "proto"
# Provisioning a node on the local cloud, several waits of up to 60 s.
PROVISION_TIMEOUT_S = 240


@pytest.fixture(scope="module")
def pb(tmp_path_factory):
    """The fleet API's generated modules: (messages, stubs)."""
    out = tmp_path_factory.mktemp("grpc-stubs")
    subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", f"-I{PROTO_ROOT}",
         f"--python_out={out}", f"--grpc_python_out={out}", "fm/fleet/v1/fleet.proto"],
        check=True,
    )
    sys.path.insert(0, str(out))
    try:
        return (importlib.import_module("fm.fleet.v1.fleet_pb2"),
                importlib.import_module("fm.fleet.v1.fleet_pb2_grpc"))
    finally:
        sys.path.remove(str(out))


@pytest.fixture(scope="module")
def channel(fm_server):
    ch = grpc.insecure_channel(f"127.0.0.1:{fm_server.grpc_port}")
    grpc.channel_ready_future(ch).result(timeout=10)
    yield ch
    ch.close()


def basic(key_id, secret):
    token = base64.b64encode(f"{key_id}:{secret}".encode()).decode()
    return (("authorization", f"Basic {token}"),)


@pytest.fixture
def admin_md(fm_server):
    return basic(fm_server.key_id, fm_server.secret)


def code_of(call):
    with pytest.raises(grpc.RpcError) as e:
        call()
    return e.value.code()


def settings(**kw):
    s = struct_pb2.Struct()
    s.update(kw)
    return s


def error_type(call):
    with pytest.raises(grpc.RpcError) as e:
        call()
    trailers = dict(e.value.trailing_metadata() or ())
    return e.value.code(), trailers.get("error-type"), e.value.details()


def grpc_network(msgs, stubs, channel, md, label, **kw):
    vn = msgs.VirtualNetwork(label=label, settings=settings(
        awsRegion="eu-west-3", awsVpcId="vpc-0a1b2c3d", awsSubnetId="subnet-0a1b2c3d",
        awsAutoCreateSecurityGroups=True))
    return stubs.VirtualNetworksStub(channel).CreateVirtualNetwork(
        msgs.CreateVirtualNetworkRequest(virtual_network=vn, **kw), metadata=md, timeout=10)


def test_health_answers_serving_without_credentials(channel):
    stub = health_pb2_grpc.HealthStub(channel)
    for service in ["", "fm.fleet.v1.Instances", "fm.fleet.v1.Operations", "fm.fleet.v1.Rollouts"]:
        got = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        assert got.status == health_pb2.HealthCheckResponse.SERVING, service


def test_reflection_lists_the_fleet_services_to_a_key_holder_only(channel, admin_md):
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    ask = lambda: iter([reflection_pb2.ServerReflectionRequest(list_services="")])
    answers = list(stub.ServerReflectionInfo(ask(), metadata=admin_md, timeout=5))
    names = {s.name for s in answers[0].list_services_response.service}
    assert {"fm.fleet.v1.Instances", "fm.fleet.v1.Operations", "fm.fleet.v1.Rollouts"} <= names, names
    assert code_of(lambda: list(stub.ServerReflectionInfo(ask(), timeout=5))) \
        == grpc.StatusCode.UNAUTHENTICATED


def test_calls_without_a_valid_key_are_unauthenticated_and_a_viewers_change_is_denied(
        fm_server, channel, pb, client, label):
    msgs, stubs = pb
    inst = stubs.InstancesStub(channel)
    req = msgs.ListInstancesRequest()
    assert code_of(lambda: inst.ListInstances(req, timeout=5)) == grpc.StatusCode.UNAUTHENTICATED
    wrong = basic(fm_server.key_id, "not-the-secret")
    assert code_of(lambda: inst.ListInstances(req, metadata=wrong, timeout=5)) \
        == grpc.StatusCode.UNAUTHENTICATED
    # Which methods exist is told to key holders only.
    nope = channel.unary_unary("/fm.fleet.v1.Instances/DropEverything")
    assert code_of(lambda: nope(b"", timeout=5)) == grpc.StatusCode.UNAUTHENTICATED
    admin = basic(fm_server.key_id, fm_server.secret)
    assert code_of(lambda: nope(b"", metadata=admin, timeout=5)) == grpc.StatusCode.UNIMPLEMENTED

    name = f"viewer-{uuid.uuid4().hex[:8]}"
    key_id, secret = fm_server.user_key(name, "viewer")
    viewer = basic(key_id, secret)
    # Bearer works as well as Basic.
    bearer = (("authorization", f"Bearer {key_id}:{secret}"),)
    inst.ListInstances(req, metadata=bearer, timeout=5)
    vn = new_network(client, label("vn"))
    tpl = new_template(client, label("tpl"))
    target = new_instance(client, label("inst"), tpl.id, vn.id, an_image_id(client))
    got = inst.GetInstance(msgs.GetInstanceRequest(id=target.id), metadata=viewer, timeout=5)
    assert got.label == target.instance_data["label"]
    with pytest.raises(grpc.RpcError) as e:
        inst.ReprovisionInstance(msgs.InstanceActionRequest(id=target.id), metadata=viewer, timeout=5)
    assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "operator" in e.value.details()
    assert code_of(lambda: grpc_network(msgs, stubs, channel, viewer, label("vvn"))) \
        == grpc.StatusCode.PERMISSION_DENIED
    refused = [r for r in fm_server.audit_log()
               if r["path"] == "/fm.fleet.v1.Instances/ReprovisionInstance" and r["actor"] == name]
    assert [r["outcome"] for r in refused] == ["refused"], refused
    missing = inst.GetInstance
    with pytest.raises(grpc.RpcError) as e:
        missing(msgs.GetInstanceRequest(id="inst-nope"), metadata=viewer, timeout=5)
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    assert dict(e.value.trailing_metadata()).get("error-type") == "NotFound"


def test_instances_page_and_provision_through_an_operation(fm_server, channel, pb, client, admin_md, label):
    msgs, stubs = pb
    inst = stubs.InstancesStub(channel)
    ops = stubs.OperationsStub(channel)
    vn = new_network(client, label("vn"))
    tpl = new_template(client, label("tpl"))
    image = an_image_id(client)
    made = [new_instance(client, label(f"inst{i}"), tpl.id, vn.id, image) for i in range(2)]
    # The one provisioned is made through the API.
    made.insert(0, client.get_instance(inst.CreateInstance(msgs.CreateInstanceRequest(
        instance=msgs.Instance(label=label("inst-grpc"), instance_settings_template_id=tpl.id,
                               virtual_network_id=vn.id, image_id=image, dss_node_type="design")),
        metadata=admin_md, timeout=10).id))

    # Every instance once, a page of one at a time.
    seen, token = [], ""
    while True:
        page = inst.ListInstances(msgs.ListInstancesRequest(page_size=1, page_token=token),
                                  metadata=admin_md, timeout=5)
        assert len(page.instances) <= 1
        seen += [i.id for i in page.instances]
        token = page.next_page_token
        if not token:
            break
    assert len(seen) == len(set(seen))
    assert {m.id for m in made} <= set(seen)
    bad = msgs.ListInstancesRequest(page_size=5000)
    assert code_of(lambda: inst.ListInstances(bad, metadata=admin_md, timeout=5)) \
        == grpc.StatusCode.INVALID_ARGUMENT

    target = made[0]
    op = inst.ReprovisionInstance(msgs.InstanceActionRequest(id=target.id), metadata=admin_md, timeout=10)
    assert op.name and op.target_id == target.id and op.kind == "PROVISION_INSTANCE", op
    deadline = time.monotonic() + PROVISION_TIMEOUT_S
    while not op.done:
        assert time.monotonic() < deadline, op
        op = ops.WaitOperation(msgs.WaitOperationRequest(name=op.name, timeout_ms=30_000),
                               metadata=admin_md, timeout=40)
    assert op.state == "done" and not op.error_type, op
    assert ops.GetOperation(msgs.GetOperationRequest(name=op.name), metadata=admin_md, timeout=5).done
    assert target.get_status()["state"] == "running"
    rows = [r for r in fm_server.audit_log() if r["path"] == "/fm.fleet.v1.Instances/ReprovisionInstance"
            and r["object"] == target.id and r["outcome"] == "ok"]
    assert len(rows) == 1 and rows[0]["operationId"] == op.name, rows

    # Stopping it the same way; then it goes.
    op = inst.StopInstance(msgs.InstanceActionRequest(id=target.id), metadata=admin_md, timeout=10)
    while not op.done:
        op = ops.WaitOperation(msgs.WaitOperationRequest(name=op.name, timeout_ms=30_000),
                               metadata=admin_md, timeout=40)
    assert op.state == "done", op
    target.delete().wait_for_result()


def test_networks_templates_and_instances_are_made_once_per_request_id_and_validated_without_a_trace(
        channel, pb, admin_md, client, label):
    msgs, stubs = pb
    vns = stubs.VirtualNetworksStub(channel)
    tpls = stubs.InstanceTemplatesStub(channel)
    insts = stubs.InstancesStub(channel)
    rid = str(uuid.uuid4())
    vn = grpc_network(msgs, stubs, channel, admin_md, label("vn"), request_id=rid)
    assert vn.id.startswith("vn-") and vn.etag and vn.nb_instances == 0, vn
    assert vn.settings["awsVpcId"] == "vpc-0a1b2c3d"
    # The retry answers the same network; nothing new is made.
    again = grpc_network(msgs, stubs, channel, admin_md, label("vn"), request_id=rid)
    assert again.id == vn.id and again.etag == vn.etag
    labels = [n.vn_data["label"] for n in client.list_virtual_networks()]
    assert labels.count(label("vn")) == 1, labels
    # The same id for another request is refused, naming it.
    code, etype, details = error_type(
        lambda: grpc_network(msgs, stubs, channel, admin_md, label("other"), request_id=rid))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and etype == "InvalidInput", details
    assert rid in details
    # validate_only: checked, answered, not stored.
    dry = grpc_network(msgs, stubs, channel, admin_md, label("dry"), validate_only=True)
    assert dry.id == "" and dry.label == label("dry")
    assert label("dry") not in [n.vn_data["label"] for n in client.list_virtual_networks()]
    # A bad field is the caller's error, by name, for a dry run too.
    bad = msgs.VirtualNetwork(label=label("bad"), settings=settings(awsRegion="eu-west-3", awsVpcId="not-a-vpc"))
    code, etype, details = error_type(lambda: vns.CreateVirtualNetwork(
        msgs.CreateVirtualNetworkRequest(virtual_network=bad, validate_only=True), metadata=admin_md, timeout=10))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "awsVpcId" in details, details
    twice = msgs.VirtualNetwork(label=label("twice"), settings=settings(label="x"))
    code, _, details = error_type(lambda: vns.CreateVirtualNetwork(
        msgs.CreateVirtualNetworkRequest(virtual_network=twice), metadata=admin_md, timeout=10))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "settings.label" in details, details

    tpl = tpls.CreateInstanceTemplate(msgs.CreateInstanceTemplateRequest(
        instance_template=msgs.InstanceTemplate(label=label("tpl"), settings=settings(
            setupActions=[{"type": "ADD_AUTHORIZED_KEY", "params": {"sshKey": "ssh-ed25519 AAAAC3Nza test@fm"}}])),
        request_id=str(uuid.uuid4())), metadata=admin_md, timeout=10)
    assert tpl.id.startswith("ist-") and tpl.settings["setupActions"][0]["type"] == "ADD_AUTHORIZED_KEY", tpl

    image = an_image_id(client)
    irid = str(uuid.uuid4())
    want = msgs.Instance(label=label("inst"), instance_settings_template_id=tpl.id,
                         virtual_network_id=vn.id, image_id=image, dss_node_type="automation",
                         fm_tags=["grpc"], settings=settings(dataVolumeSizeGB=60))
    made = [insts.CreateInstance(msgs.CreateInstanceRequest(instance=want, request_id=irid),
                                 metadata=admin_md, timeout=10) for _ in range(2)]
    assert made[0].id and made[0].id == made[1].id, made
    got = insts.GetInstance(msgs.GetInstanceRequest(id=made[0].id), metadata=admin_md, timeout=5)
    assert got.dss_node_type == "automation" and list(got.fm_tags) == ["grpc"]
    # A whole number goes through the Struct as the integer it is.
    assert client.get_instance(made[0].id).instance_data["dataVolumeSizeGB"] == 60
    assert [i.id for i in client.list_instances()].count(made[0].id) == 1
    assert vns.GetVirtualNetwork(msgs.GetVirtualNetworkRequest(id=vn.id),
                                 metadata=admin_md, timeout=5).nb_instances == 1


def test_an_update_takes_the_masked_fields_only_and_a_stale_etag_is_aborted(channel, pb, admin_md, label):
    msgs, stubs = pb
    vns = stubs.VirtualNetworksStub(channel)
    vn = grpc_network(msgs, stubs, channel, admin_md, label("vn"))
    # Only the label, though the message carries other settings.
    change = msgs.VirtualNetwork(id=vn.id, etag=vn.etag, label=label("renamed"),
                                 settings=settings(contactMail="ignored@example.com"))
    up = vns.UpdateVirtualNetwork(msgs.UpdateVirtualNetworkRequest(
        virtual_network=change, update_mask=field_mask_pb2.FieldMask(paths=["label"])),
        metadata=admin_md, timeout=10)
    assert up.label == label("renamed") and "contactMail" not in up.settings, up
    assert up.etag and up.etag != vn.etag
    # The etag read before that change is stale now.
    stale = msgs.VirtualNetwork(id=vn.id, etag=vn.etag, label=label("lost"))
    code, etype, details = error_type(lambda: vns.UpdateVirtualNetwork(msgs.UpdateVirtualNetworkRequest(
        virtual_network=stale, update_mask=field_mask_pb2.FieldMask(paths=["label"])),
        metadata=admin_md, timeout=10))
    assert code == grpc.StatusCode.ABORTED and etype == "Stale", details
    now = vns.GetVirtualNetwork(msgs.GetVirtualNetworkRequest(id=vn.id), metadata=admin_md, timeout=5)
    assert now.label == label("renamed") and now.etag == up.etag
    # One setting by name; a dry run changes nothing; a path that names nothing is refused.
    one = msgs.VirtualNetwork(id=vn.id, etag=now.etag, settings=settings(contactMail="ops@example.com"))
    mask = field_mask_pb2.FieldMask(paths=["settings.contactMail"])
    dry = vns.UpdateVirtualNetwork(msgs.UpdateVirtualNetworkRequest(
        virtual_network=one, update_mask=mask, validate_only=True), metadata=admin_md, timeout=10)
    assert dry.settings["contactMail"] == "ops@example.com" and dry.label == label("renamed")
    assert vns.GetVirtualNetwork(msgs.GetVirtualNetworkRequest(id=vn.id), metadata=admin_md,
                                 timeout=5).etag == now.etag
    up = vns.UpdateVirtualNetwork(msgs.UpdateVirtualNetworkRequest(virtual_network=one, update_mask=mask),
                                  metadata=admin_md, timeout=10)
    assert up.settings["contactMail"] == "ops@example.com" and up.label == label("renamed")
    code, _, details = error_type(lambda: vns.UpdateVirtualNetwork(msgs.UpdateVirtualNetworkRequest(
        virtual_network=msgs.VirtualNetwork(id=vn.id), update_mask=field_mask_pb2.FieldMask(paths=["nope"])),
        metadata=admin_md, timeout=10))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "nope" in details, details
    # Deleting it is an operation.
    op = vns.DeleteVirtualNetwork(msgs.DeleteVirtualNetworkRequest(id=vn.id), metadata=admin_md, timeout=10)
    assert op.name and op.target_id == vn.id, op


def wait_rollout(ro_stub, msgs, md, rid, secs=60):
    deadline = time.monotonic() + secs
    while True:
        r = ro_stub.GetRollout(msgs.GetRolloutRequest(id=rid), metadata=md, timeout=5)
        if r.state in ("done", "failed", "cancelled"):
            return r
        assert time.monotonic() < deadline, r
        time.sleep(0.2)


def test_rollouts_are_started_read_and_refused_through_the_rollouts_service(
        fm_server, channel, pb, client, admin_md, label):
    msgs, stubs = pb
    ro = stubs.RolloutsStub(channel)
    vn = new_network(client, label("vn"))
    tpl = new_template(client, label("tpl"))
    image = an_image_id(client)
    made = [new_instance(client, label(f"ro{i}"), tpl.id, vn.id, image) for i in range(2)]
    ids = [m.id for m in made]

    # Never provisioned: a restart trips the meltdown guard, nothing starts.
    spec = msgs.RolloutSpec(
        label="restart", selector=msgs.RolloutSelector(instance_ids=ids),
        action=msgs.RolloutAction(type="RESTART_NODE"), max_in_flight="50%")
    r = ro.CreateRollout(msgs.CreateRolloutRequest(spec=spec), metadata=admin_md, timeout=10)
    assert r.state == "failed" and "meltdown guard" in r.reason, r
    assert [t.state for t in r.targets] == ["skipped", "skipped"]
    assert r.spec.max_in_flight == "50%" and r.spec.health_seconds == 10, r.spec

    # A start of instances with no VM: each target fails; the budget of 1
    # lets the first failure pass and stops at the second.
    spec = msgs.RolloutSpec(
        selector=msgs.RolloutSelector(instance_ids=ids), action=msgs.RolloutAction(type="START"),
        max_errors="1", health_seconds=0)
    r = ro.CreateRollout(msgs.CreateRolloutRequest(spec=spec), metadata=admin_md, timeout=10)
    assert r.state == "running", r
    r = wait_rollout(ro, msgs, admin_md, r.id)
    assert r.state == "failed", r
    assert r.counts.failed == 2 and r.counts.targets == 2, r.counts
    assert all("not provisioned" in t.error and t.operation_id == "" for t in r.targets), r.targets
    listed = ro.ListRollouts(msgs.ListRolloutsRequest(page_size=1), metadata=admin_md, timeout=5)
    assert [x.id for x in listed.rollouts] == [r.id] and listed.next_page_token
    assert not listed.rollouts[0].targets
    rows = [x for x in fm_server.audit_log() if x["path"] == "/fm.fleet.v1.Rollouts/CreateRollout"]
    assert len(rows) >= 2 and all(x["outcome"] == "ok" for x in rows), rows

    # An ended rollout can't be paused; bad specs are named.
    with pytest.raises(grpc.RpcError) as e:
        ro.PauseRollout(msgs.RolloutActionRequest(id=r.id), metadata=admin_md, timeout=5)
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "is failed" in e.value.details()
    for bad, needle in [
        (msgs.RolloutSpec(selector=msgs.RolloutSelector(all=True),
                          action=msgs.RolloutAction(type="FLY")), "FLY"),
        (msgs.RolloutSpec(selector=msgs.RolloutSelector(),
                          action=msgs.RolloutAction(type="STOP")), "all=true"),
        (msgs.RolloutSpec(selector=msgs.RolloutSelector(all=True),
                          action=msgs.RolloutAction(type="STOP"), max_in_flight="lots"), "percentage"),
        (msgs.RolloutSpec(selector=msgs.RolloutSelector(all=True),
                          action=msgs.RolloutAction(type="STOP", image_id=image)), "imageId"),
    ]:
        with pytest.raises(grpc.RpcError) as e:
            ro.CreateRollout(msgs.CreateRolloutRequest(spec=bad), metadata=admin_md, timeout=5)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT, bad
        assert needle in e.value.details(), (needle, e.value.details())

    # A viewer reads rollouts and starts none.
    key_id, secret = fm_server.user_key(f"viewer-{uuid.uuid4().hex[:8]}", "viewer")
    viewer = basic(key_id, secret)
    assert ro.GetRollout(msgs.GetRolloutRequest(id=r.id), metadata=viewer, timeout=5).id == r.id
    with pytest.raises(grpc.RpcError) as e:
        ro.CreateRollout(msgs.CreateRolloutRequest(spec=spec), metadata=viewer, timeout=5)
    assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED
    for m in made:
        m.delete().wait_for_result()


def wait_op(ops, msgs, md, op, secs=PROVISION_TIMEOUT_S):
    deadline = time.monotonic() + secs
    while not op.done:
        assert time.monotonic() < deadline, op
        op = ops.WaitOperation(msgs.WaitOperationRequest(name=op.name, timeout_ms=30_000),
                               metadata=md, timeout=40)
    return op


def test_cloud_accounts_keep_their_secret_sealed_and_are_made_once_per_request_id(
        fm_server, channel, pb, admin_md, client, label):
    msgs, stubs = pb
    accts = stubs.CloudAccountsStub(channel)
    ops = stubs.OperationsStub(channel)
    secret = "grpcSecret" + uuid.uuid4().hex[:30]
    fm_server.secrets.append(secret)
    want = msgs.CloudAccount(label=label("ca"), description="through gRPC", settings=settings(
        awsAuthenticationMode="KEYPAIR", awsAccessKeyId="AKIAGRPCEXAMPLE00000", awsSecretAccessKey=secret))
    rid = str(uuid.uuid4())
    made = [accts.CreateCloudAccount(msgs.CreateCloudAccountRequest(cloud_account=want, request_id=rid),
                                     metadata=admin_md, timeout=10) for _ in range(2)]
    a = made[0]
    assert a.id.startswith("ca-") and a.id == made[1].id and a.etag == made[1].etag, made
    assert a.has_aws_secret_access_key and "awsSecretAccessKey" not in a.settings, a
    assert a.settings["awsAccessKeyId"] == "AKIAGRPCEXAMPLE00000"
    assert [x.id for x in accts.ListCloudAccounts(msgs.ListCloudAccountsRequest(), metadata=admin_md,
                                                  timeout=5).cloud_accounts].count(a.id) == 1
    # KEYPAIR without a secret is the caller's error, for a dry run too.
    bare = msgs.CloudAccount(label=label("bare"), settings=settings(awsAuthenticationMode="KEYPAIR",
                                                                     awsAccessKeyId="AKIAGRPCEXAMPLE00000"))
    code, _, details = error_type(lambda: accts.CreateCloudAccount(
        msgs.CreateCloudAccountRequest(cloud_account=bare, validate_only=True), metadata=admin_md, timeout=10))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "awsSecretAccessKey" in details, details
    # A masked update keeps the stored secret; the etag it read goes stale.
    up = accts.UpdateCloudAccount(msgs.UpdateCloudAccountRequest(
        cloud_account=msgs.CloudAccount(id=a.id, etag=a.etag, description="renamed"),
        update_mask=field_mask_pb2.FieldMask(paths=["description"])), metadata=admin_md, timeout=10)
    assert up.description == "renamed" and up.has_aws_secret_access_key and up.etag != a.etag, up
    code, etype, _ = error_type(lambda: accts.UpdateCloudAccount(msgs.UpdateCloudAccountRequest(
        cloud_account=msgs.CloudAccount(id=a.id, etag=a.etag, description="lost"),
        update_mask=field_mask_pb2.FieldMask(paths=["description"])), metadata=admin_md, timeout=10))
    assert code == grpc.StatusCode.ABORTED and etype == "Stale"
    # In use by a network: deleting it is refused before anything starts.
    vn = new_network(client, label("vn"), account=client.get_cloud_account(a.id))
    code, _, details = error_type(lambda: accts.DeleteCloudAccount(
        msgs.DeleteCloudAccountRequest(id=a.id), metadata=admin_md, timeout=10))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "1 virtual network" in details, details
    vn.delete().wait_for_result()
    op = wait_op(ops, msgs, admin_md, accts.DeleteCloudAccount(
        msgs.DeleteCloudAccountRequest(id=a.id), metadata=admin_md, timeout=10))
    assert op.state == "done", op
    code, _, _ = error_type(lambda: accts.GetCloudAccount(
        msgs.GetCloudAccountRequest(id=a.id), metadata=admin_md, timeout=5))
    assert code == grpc.StatusCode.NOT_FOUND
    # The catalog, to a viewer too.
    key_id, vsecret = fm_server.user_key(f"viewer-{uuid.uuid4().hex[:8]}", "viewer")
    images = stubs.ImagesStub(channel).ListImages(msgs.ListImagesRequest(), metadata=basic(key_id, vsecret),
                                                  timeout=5).images
    assert [i.id for i in images] == [i["id"] for i in client.list_instance_images()]
    assert all(i.node_version for i in images)


def test_an_instances_snapshots_and_backups_are_taken_read_verified_and_deleted_as_operations(
        channel, pb, admin_md, client, label):
    msgs, stubs = pb
    inst_stub = stubs.InstancesStub(channel)
    ops = stubs.OperationsStub(channel)
    snaps = stubs.SnapshotsStub(channel)
    bks = stubs.BackupsStub(channel)
    vn = new_network(client, label("vn"))
    tpl = new_template(client, label("tpl"))
    inst = new_instance(client, label("data"), tpl.id, vn.id, an_image_id(client))
    # Not provisioned yet: no volume to snapshot, nothing to back up.
    code, _, details = error_type(lambda: snaps.CreateSnapshot(
        msgs.CreateSnapshotRequest(instance_id=inst.id), metadata=admin_md, timeout=10))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "provision" in details, details
    rid = str(uuid.uuid4())
    op = wait_op(ops, msgs, admin_md, inst_stub.ReprovisionInstance(
        msgs.InstanceActionRequest(id=inst.id, request_id=rid), metadata=admin_md, timeout=10))
    assert op.state == "done", op
    # A retried action answers the operation it started; the id given to
    # another action is refused.
    again = inst_stub.ReprovisionInstance(msgs.InstanceActionRequest(id=inst.id, request_id=rid),
                                          metadata=admin_md, timeout=10)
    assert again.name == op.name and again.done, again
    code, _, details = error_type(lambda: inst_stub.StopInstance(
        msgs.InstanceActionRequest(id=inst.id, request_id=rid), metadata=admin_md, timeout=10))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and rid in details, details

    op = wait_op(ops, msgs, admin_md, snaps.CreateSnapshot(
        msgs.CreateSnapshotRequest(instance_id=inst.id, reason="before the upgrade"),
        metadata=admin_md, timeout=10))
    assert op.state == "done" and op.kind, op
    listed = snaps.ListSnapshots(msgs.ListSnapshotsRequest(instance_id=inst.id), metadata=admin_md,
                                 timeout=5).snapshots
    assert len(listed) == 1 and listed[0].reason == "before the upgrade", listed
    got = snaps.GetSnapshot(msgs.SnapshotRequest(instance_id=inst.id, id=listed[0].id),
                            metadata=admin_md, timeout=5)
    assert got.cloud_snapshot_id and got.instance_id == inst.id and not got.automated, got
    op = wait_op(ops, msgs, admin_md, snaps.DeleteSnapshot(
        msgs.SnapshotRequest(instance_id=inst.id, id=got.id), metadata=admin_md, timeout=10))
    assert op.state == "done", op
    assert not snaps.ListSnapshots(msgs.ListSnapshotsRequest(instance_id=inst.id), metadata=admin_md,
                                   timeout=5).snapshots

    brid = str(uuid.uuid4())
    take = msgs.CreateBackupRequest(instance_id=inst.id, reason="grpc", request_id=brid)
    first = bks.CreateBackup(take, metadata=admin_md, timeout=10)
    assert bks.CreateBackup(take, metadata=admin_md, timeout=10).name == first.name
    op = wait_op(ops, msgs, admin_md, first)
    assert op.state == "done", op
    (b,) = bks.ListBackups(msgs.ListBackupsRequest(instance_id=inst.id), metadata=admin_md,
                           timeout=5).backups
    assert b.reason == "grpc" and b.files > 0 and len(b.manifest_sha256) == 64, b
    assert not b.HasField("last_verification")
    op = wait_op(ops, msgs, admin_md, bks.VerifyBackup(
        msgs.BackupRequest(instance_id=inst.id, id=b.id), metadata=admin_md, timeout=10))
    assert op.state == "done", op
    b = bks.GetBackup(msgs.BackupRequest(instance_id=inst.id, id=b.id), metadata=admin_md, timeout=5)
    assert b.last_verification.ok and b.last_verification.verified_at_ms > 0, b
    # Every step is in the operations' list, newest first.
    names = [o.name for o in ops.ListOperations(msgs.ListOperationsRequest(page_size=20),
                                                metadata=admin_md, timeout=5).operations]
    assert op.name == names[0], names
    op = wait_op(ops, msgs, admin_md, bks.DeleteBackup(
        msgs.BackupRequest(instance_id=inst.id, id=b.id), metadata=admin_md, timeout=10))
    assert op.state == "done", op
    code, _, _ = error_type(lambda: bks.GetBackup(
        msgs.BackupRequest(instance_id=inst.id, id=b.id), metadata=admin_md, timeout=5))
    assert code == grpc.StatusCode.NOT_FOUND
    inst.delete().wait_for_result()


def test_watchers_see_an_instances_operations_end_and_an_operation_move_until_done(
        channel, pb, admin_md, client, label):
    msgs, stubs = pb
    insts = stubs.InstancesStub(channel)
    ops = stubs.OperationsStub(channel)
    vn = new_network(client, label("vn"))
    tpl = new_template(client, label("tpl"))
    image = an_image_id(client)
    a = new_instance(client, label("watched"), tpl.id, vn.id, image)
    b = new_instance(client, label("other"), tpl.id, vn.id, image)
    events = insts.WatchInstances(msgs.WatchInstancesRequest(instance_ids=[a.id]),
                                  metadata=admin_md, timeout=PROVISION_TIMEOUT_S)
    # The stream reads its starting point when it opens; give it that moment.
    time.sleep(1)
    # Another instance's change is not this watcher's.
    b.delete().wait_for_result()
    op = insts.ReprovisionInstance(msgs.InstanceActionRequest(id=a.id), metadata=admin_md, timeout=10)
    moves = list(ops.WatchOperation(msgs.WatchOperationRequest(name=op.name), metadata=admin_md,
                                    timeout=PROVISION_TIMEOUT_S))
    assert moves[-1].done and moves[-1].state == "done", moves[-1]
    # One message per change; only the last one done (the first too when
    # it had ended by the time the watch began).
    assert not any(m.done for m in moves[:-1]), moves
    assert op.done or len(moves) >= 2, moves
    percents = [m.percent for m in moves]
    assert percents == sorted(percents), percents
    ev = next(events)
    assert (ev.instance_id, ev.operation, ev.kind, ev.state) == (a.id, op.name, "PROVISION_INSTANCE", "done"), ev
    events.cancel()

    # After a reconnect, resuming from the last event seen misses nothing.
    stop = insts.StopInstance(msgs.InstanceActionRequest(id=a.id), metadata=admin_md, timeout=10)
    assert wait_op(ops, msgs, admin_md, stop).state == "done"
    resumed = insts.WatchInstances(msgs.WatchInstancesRequest(instance_ids=[a.id], after_event_id=ev.event_id),
                                   metadata=admin_md, timeout=30)
    ev2 = next(resumed)
    assert ev2.operation == stop.name and ev2.event_id > ev.event_id and ev2.kind == "STOP_INSTANCE", ev2
    resumed.cancel()
    code, _, _ = error_type(lambda: list(ops.WatchOperation(
        msgs.WatchOperationRequest(name="op-doesnotexist"), metadata=admin_md, timeout=5)))
    assert code == grpc.StatusCode.NOT_FOUND
    a.delete().wait_for_result()
