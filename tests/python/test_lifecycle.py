"""The instance lifecycle end to end: the real server, a real `fm-agent`
process per VM and the stand-in node kit, driven by the public Python client,
on the `local` cloud (SQLite and PostgreSQL) and on the `aws` cloud (the EC2
emulator; afterwards EC2 holds nothing of the test).

One scenario, in order (each step needs the previous one): two instances
are provisioned from a template with setup actions, their node pages read,
stopped and started, the node restarted, a value written and brought back
from a snapshot, one instance upgraded, a downgrade refused, then
deprovision and delete, after which no agent or node process is left.
"""

import subprocess
import time

import pytest
import requests
from dataikuapi.fm.instancesettingstemplates import FMSetupAction, FMSetupActionType
from dataikuapi.utils import DataikuException

OLD = "dss-13.5.4-default"
NEW = "dss-14.2.0-default"


def wait(future):
    return future.wait_for_result()


def node(url, path, method="GET", **kw):
    return requests.request(method, url + path, timeout=10, **kw)


def unreachable(url):
    try:
        requests.get(url + "/api/health", timeout=2)
        return False
    except requests.RequestException:
        return True


def processes_under(path):
    """Processes whose command line mentions `path` (our VMs' agents and nodes)."""
    out = subprocess.run(["pgrep", "-af", str(path)], capture_output=True, text=True)
    # Not pgrep itself, nor the EC2 rig that plays the VMs.
    return [l for l in out.stdout.splitlines() if "pgrep" not in l and "ec2_rig.py" not in l]


@pytest.fixture
def lifecycle(client, fm_server, label):
    creator = client.new_virtual_network_creator(label("net")).with_default_values()
    if fm_server.rig is not None:
        creator.data["awsAutoCreateSecurityGroups"] = True
    vn = creator.create()
    actions = [
        FMSetupAction.add_authorized_key("ssh-ed25519 AAAAC3NzaE2E e2e@fm"),
        FMSetupAction(FMSetupActionType.ADD_ENV_VARIABLES, {"variables": [{"key": "E2E_VAR", "value": "from-template"}]}),
    ]
    tpl = client.new_instance_template_creator(label("tpl")).with_setup_actions(actions).create()
    return vn, tpl


def test_two_instances_live_through_the_whole_lifecycle(client, fm_server, lifecycle, label):
    vn, tpl = lifecycle
    a = client.new_instance_creator(label("a"), tpl.id, vn.id, OLD).create()
    b = client.new_instance_creator(label("b"), tpl.id, vn.id, NEW).with_dss_node_type("automation").create()

    # Provision both at once.
    fa, fb = a.reprovision(), b.reprovision()
    wait(fa)
    wait(fb)
    urls = {}
    for inst, version, node_type in [(a, "13.5.4", "design"), (b, "14.2.0", "automation")]:
        status = inst.get_status()
        assert status["hasPhysicalInstance"] is True, status
        url = status["publicURL"]
        urls[inst.id] = url
        page = node(url, "/")
        assert page.status_code == 200 and "Stand-in node" in page.text
        st = node(url, "/api/status").json()
        assert st["version"] == version and st["nodeType"] == node_type, st
        assert st["envVariables"].get("E2E_VAR") == "from-template", st
    assert urls[a.id] != urls[b.id]

    # Stop / start the VM, restart the node.
    wait(a.stop())
    assert unreachable(urls[a.id])
    assert a.get_status()["cloudState"] == "stopped"
    wait(a.start())
    assert node(urls[a.id], "/api/health").status_code == 200
    wait(a.restart_dss())
    assert node(urls[a.id], "/api/health").status_code == 200

    # A value written before a snapshot comes back when reprovisioning from it.
    assert node(urls[a.id], "/api/values/e2e", "PUT", data=b"before").status_code == 204
    snap = a.snapshot("before the change")
    assert snap.get_info()["reasonForSnapshot"] == "before the change"
    assert [s.snapshot_id for s in a.list_snapshots()] == [snap.snapshot_id]
    assert node(urls[a.id], "/api/values/e2e", "PUT", data=b"after").status_code == 204
    wait(snap.reprovision())
    url_a = a.get_status()["publicURL"]
    assert node(url_a, "/api/values/e2e").text == "before"

    # Upgrade a to the newer kit: the data dir is upgraded in place.
    a = client.get_instance(a.id)
    a.instance_data["imageId"] = NEW
    a.save()
    wait(a.reprovision())
    url_a = a.get_status()["publicURL"]
    st = node(url_a, "/api/status").json()
    assert st["version"] == "14.2.0", st
    assert any("13.5.4" in h and "14.2.0" in h for h in st["upgradeHistory"]), st
    assert node(url_a, "/api/values/e2e").text == "before"

    # A downgrade is refused.
    b = client.get_instance(b.id)
    b.instance_data["imageId"] = OLD
    b.save()
    with pytest.raises(DataikuException, match="Conflict"):
        b.reprovision()

    # Deprovision keeps the instance but not its VM; delete removes it all.
    wait(b.deprovision())
    assert b.get_status()["hasPhysicalInstance"] is False
    assert unreachable(urls[b.id])
    wait(a.delete())
    wait(b.delete())
    ids = [i.id for i in client.list_instances()]
    assert a.id not in ids and b.id not in ids

    # Nothing of ours still runs.
    deadline = time.time() + 10
    while processes_under(fm_server.vms_dir) and time.time() < deadline:
        time.sleep(0.5)
    assert processes_under(fm_server.vms_dir) == []

    if fm_server.rig is not None:
        # The network's security group goes with the network; then EC2 holds
        # nothing of the test.
        wait(vn.delete())
        wait(tpl.delete())
        owned = fm_server.rig.owned()
        for kind in ["instances", "volumes", "securityGroups", "addresses"]:
            assert owned[kind] == [], (kind, owned)
