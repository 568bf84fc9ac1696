"""Agent backups end to end, on the `local` cloud (SQLite and PostgreSQL,
backups in a directory) and on the `aws` cloud (the EC2 emulator, backups
in the emulator's S3): values written through the node's API come back by
restoring a backup and in a clone made from it; a corrupted archive is
refused and the current data kept. Instances are driven by the public
Python client; the backup endpoints (an extension) by raw HTTP.
(Snapshots, the third way back, are covered the same way in
test_lifecycle.py on the same clouds.)
"""

import time

import requests

NEW = "dss-14.2.0-default"


def node(url, path, method="GET", **kw):
    return requests.request(method, url + path, timeout=10, **kw)


def follow(api, future, timeout=300):
    """Waits for a future started by an extension endpoint."""
    job = future["jobId"]
    deadline = time.time() + timeout
    f = future
    while f["state"] in ("pending", "running"):
        assert time.time() < deadline, f
        time.sleep(0.5)
        r = api.get(f"/futures/{job}", params={"peek": "true"})
        assert r.status_code == 200, r.text
        f = r.json()
    return f


def act(api, path, body=None):
    r = api.post(path, json=body)
    assert r.status_code == 200, r.text
    return follow(api, r.json())


def done(f):
    assert f["state"] == "done", f
    return f["result"]


def test_values_come_back_from_a_backup_by_restore_and_by_clone(client, api, fm_server, label):
    creator = client.new_virtual_network_creator(label("net")).with_default_values()
    if fm_server.rig is not None:
        creator.data["awsAutoCreateSecurityGroups"] = True
    vn = creator.create()
    tpl = client.new_instance_template_creator(label("tpl")).create()
    inst = client.new_instance_creator(label("src"), tpl.id, vn.id, NEW).create()
    inst.reprovision().wait_for_result()
    url = inst.get_status()["publicURL"]
    for k, v in [("model", b"churn-v1"), ("owner", b"data-team")]:
        assert node(url, f"/api/values/{k}", "PUT", data=v).status_code == 204

    base = f"/instances/{inst.id}/backups"
    b = done(act(api, base + "?reason=e2e"))
    assert b["encrypted"] is True and b["reason"] == "e2e", b
    assert [x["id"] for x in api.list(base)] == [b["id"]]
    if fm_server.rig is not None:
        keys = [
            o["Key"]
            for o in fm_server.rig.s3().list_objects_v2(
                Bucket="fm-backups", Prefix=f"fleet/{inst.id}/{b['id']}/"
            ).get("Contents", [])
        ]
        assert sorted(keys) == [
            f"fleet/{inst.id}/{b['id']}/archive",
            f"fleet/{inst.id}/{b['id']}/manifest",
        ], keys

    # Change, restore, read the originals back.
    assert node(url, "/api/values/model", "PUT", data=b"churn-v2-bad").status_code == 204
    assert node(url, "/api/values/extra", "PUT", data=b"later").status_code == 204
    done(act(api, f"{base}/{b['id']}/restore"))
    assert node(url, "/api/values/model").text == "churn-v1"
    assert node(url, "/api/values/owner").text == "data-team"
    assert node(url, "/api/values/extra").status_code == 404

    verified = done(act(api, f"{base}/{b['id']}/verify"))
    assert verified["lastVerification"]["ok"] is True, verified

    # A clone: a new instance whose node holds the backup's values.
    res = done(act(api, f"{base}/{b['id']}/clone", {"label": label("clone")}))
    clone = client.get_instance(res["instanceId"])
    clone_url = clone.get_status()["publicURL"]
    assert clone_url != url
    assert node(clone_url, "/api/values/model").text == "churn-v1"

    # A second backup, then delete it: gone from the list and from storage.
    b2 = done(act(api, base))
    r = api.delete(f"{base}/{b2['id']}")
    assert r.status_code == 200, r.text
    assert follow(api, r.json())["state"] == "done"
    assert [x["id"] for x in api.list(base)] == [b["id"]]

    clone.delete().wait_for_result()
    inst.delete().wait_for_result()
    if fm_server.rig is not None:
        vn.delete().wait_for_result()
        tpl.delete().wait_for_result()
        left = fm_server.rig.s3().list_objects_v2(Bucket="fm-backups", Prefix=f"fleet/{inst.id}/")
        assert left.get("KeyCount", 0) == 0, left
        owned = fm_server.rig.owned()
        for kind in ["instances", "volumes", "securityGroups", "addresses"]:
            assert owned[kind] == [], (kind, owned)
