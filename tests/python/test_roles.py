"""Roles through the public client: a viewer's key reads everything the
client reads and is refused its first change with 403; an operator runs
lifecycle actions but not configuration; the audit log names who changed
what, and what was refused."""

import uuid

import pytest
from dataikuapi.utils import DataikuException

from test_fmclient import an_image_id, new_instance, new_network, new_template


def forbidden(needed: str):
    return pytest.raises(DataikuException, match=r"^Forbidden: .*'%s'" % needed)


@pytest.fixture
def viewer(fm_server, make_client):
    key_id, secret = fm_server.user_key(f"viewer-{uuid.uuid4().hex[:8]}", "viewer")
    return make_client(key_id, secret)


@pytest.fixture
def operator(fm_server, make_client):
    name = f"operator-{uuid.uuid4().hex[:8]}"
    key_id, secret = fm_server.user_key(name, "operator")
    c = make_client(key_id, secret)
    c.user_name = name
    return c


def test_a_viewer_reads_everything_the_client_reads_and_changes_nothing(client, viewer, label):
    vn = new_network(client, label("vn"))
    tmpl = new_template(client, label("tmpl"))
    inst = new_instance(client, label("inst"), tmpl.id, vn.id, an_image_id(client))
    acct = client.new_cloud_account_creator(label("acct")).same_as_fm().create()

    assert vn.id in [n.id for n in viewer.list_virtual_networks()]
    assert viewer.get_virtual_network(vn.id).vn_data == client.get_virtual_network(vn.id).vn_data
    assert tmpl.id in [t.id for t in viewer.list_instance_templates()]
    assert viewer.get_instance_template(tmpl.id).ist_data == client.get_instance_template(tmpl.id).ist_data
    assert inst.id in [i.id for i in viewer.list_instances()]
    assert viewer.get_instance(inst.id).instance_data == client.get_instance(inst.id).instance_data
    assert acct.id in [a.id for a in viewer.list_cloud_accounts()]
    assert viewer.get_cloud_account(acct.id).account_data == client.get_cloud_account(acct.id).account_data
    assert viewer.list_instance_images() == client.list_instance_images()
    assert viewer.get_cloud_credentials().cloud_credentials == client.get_cloud_credentials().cloud_credentials
    assert viewer.get_cloud_tags().tags == client.get_cloud_tags().tags
    assert viewer.get_instance(inst.id).get_status() is not None

    # Its first change is refused, naming the role it needs; nothing is made.
    before = [n.id for n in client.list_virtual_networks()]
    with forbidden("admin"):
        new_network(viewer, label("vn2"))
    assert [n.id for n in client.list_virtual_networks()] == before
    with forbidden("operator"):
        viewer.get_instance(inst.id).reprovision()
    with forbidden("operator"):
        viewer.get_instance(inst.id).delete()
    assert inst.id in [i.id for i in client.list_instances()]


def test_an_operator_runs_lifecycle_actions_but_not_configuration(client, operator, api, label):
    vn = new_network(client, label("vn"))
    tmpl = new_template(client, label("tmpl"))
    inst = new_instance(client, label("inst"), tmpl.id, vn.id, an_image_id(client))
    with forbidden("admin"):
        operator.get_virtual_network(vn.id).delete()
    with forbidden("admin"):
        new_template(operator, label("tmpl2"))
    # Deleting an instance is a lifecycle action: the operator's future
    # says who started it.
    future = operator.get_instance(inst.id).delete()
    future.wait_for_result()
    state = api.get(f"/futures/{future.job_id}?peek=true").json()
    assert state["initiatedBy"] == operator.user_name, state

    rows = api.get(f"/audit-log?actor={operator.user_name}").json()
    by_path = {(r["method"], r["path"].split("/tenants/main")[-1]): r for r in rows}
    deleted = by_path[("GET", f"/instances/{inst.id}/actions/delete")]
    assert deleted["outcome"] == "ok" and deleted["operationId"] == future.job_id, deleted
    refused = by_path[("DELETE", f"/virtual-networks/{vn.id}")]
    assert refused["outcome"] == "refused" and refused["status"] == 403, refused


def test_the_audit_log_is_the_admins_alone(viewer, operator, api):
    for c in (viewer, operator):
        with forbidden("admin"):
            c._perform_tenant_json("GET", "/audit-log")
    rows = api.get("/audit-log?limit=5").json()
    assert 1 <= len(rows) <= 5, rows
    assert all(r["outcome"] in ("started", "ok", "failed", "refused") for r in rows), rows
