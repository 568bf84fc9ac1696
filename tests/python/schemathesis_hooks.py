"""Schemathesis hooks for tests/python/schemathesis.sh.

The OpenAPI document states every rule JSON Schema can state. A few rules
depend on what exists or on another field's value in a way JSON Schema has
no word for; the document says them in prose, and these hooks make the
schema-valid requests schemathesis generates follow them, so that a refusal
of one is a finding and not noise. Only schema-valid (positive) cases are
touched; schema-invalid ones go out as generated.

- A body names existing objects (`instanceSettingsTemplateId`,
  `virtualNetworkId`, `imageId`, `accountId`): the ones made before the run
  (FM_ST_TEMPLATE, FM_ST_NETWORK, FM_ST_IMAGE, FM_ST_ACCOUNT).
- `dataVolumeSizeMaxGB` is not smaller than `dataVolumeSizeGB`.
- A network is created with its region, VPC and subnet, or with
  `useDefaultValues=true` for the ones left out; those three can't change
  afterwards (a PUT keeps the stored ones), nor an instance's network.
- A `license` is a JSON object written as a string.
- A rollout's selector names at least one criterion (else `all: true`),
  the instance, template, network and image made before the run
  (FM_ST_INSTANCE...), no FM tag (that instance has none), and its
  `healthTimeoutSeconds` is not shorter than its `healthSeconds`.
- A fleet file's objects follow their own schemas (left out: a generated
  one is noise), it prunes nothing (the run's own objects stay), and an
  apply carries the fingerprint its plan answers now.
"""

import json
import os

import requests
import schemathesis

TEMPLATE = os.environ["FM_ST_TEMPLATE"]
NETWORK = os.environ["FM_ST_NETWORK"]
IMAGE = os.environ["FM_ST_IMAGE"]
ACCOUNT = os.environ["FM_ST_ACCOUNT"]
INSTANCE = os.environ["FM_ST_INSTANCE"]
BASE = os.environ["FM_ST_BASE"]
AUTH = (os.environ["FM_ST_KEY_ID"], os.environ["FM_ST_KEY_SECRET"])
PLACEMENT = ("awsRegion", "awsVpcId", "awsSubnetId")


def _positive(case) -> bool:
    meta = getattr(case, "meta", None)
    return meta is not None and meta.generation.mode.is_positive


def _json_object(text) -> bool:
    try:
        return isinstance(json.loads(text), dict)
    except (TypeError, ValueError):
        return False


def _stored(case) -> dict:
    """The object a PUT replaces, as FM has it ({} if there is none)."""
    path = case.formatted_path if hasattr(case, "formatted_path") else None
    if path is None:
        path = case.path.format(**(case.path_parameters or {}))
    r = requests.get(BASE + path, auth=AUTH, timeout=30)
    return r.json() if r.status_code == 200 else {}


@schemathesis.hook
def before_call(ctx, case, **kwargs):
    if not _positive(case) or not isinstance(case.body, dict):
        return
    body = case.body
    path, method = case.path, case.method.upper()
    if path.endswith("/instances") or path.endswith("/instances/{instanceId}"):
        body["instanceSettingsTemplateId"] = TEMPLATE
        body["virtualNetworkId"] = NETWORK
        body["imageId"] = IMAGE
        size, most = body.get("dataVolumeSizeGB"), body.get("dataVolumeSizeMaxGB")
        if isinstance(size, int) and isinstance(most, int) and most < size:
            body["dataVolumeSizeMaxGB"] = size
    if path.endswith("/clone") and body.get("imageId") is not None:
        body["imageId"] = IMAGE
    if "/virtual-networks" in path:
        if body.get("accountId") is not None:
            body["accountId"] = ACCOUNT
        if method == "POST":
            defaults = (case.query or {}).get("useDefaultValues") in ("true", "True")
            if not defaults and any(body.get(k) is None for k in PLACEMENT):
                case.query = {**(case.query or {}), "useDefaultValues": "true"}
        elif method == "PUT":
            stored = _stored(case)
            for k in PLACEMENT:
                if k in stored:
                    body[k] = stored[k]
    if "license" in body and body["license"] is not None and not _json_object(body["license"]):
        body["license"] = "{}"
    if path.endswith("/rollouts") and method == "POST":
        _rollout(body)
    if path.endswith("/fleet/plan"):
        _fleet(body)
    if path.endswith("/fleet/apply") and isinstance(body.get("fleet"), dict):
        _fleet(body["fleet"])
        r = requests.post(BASE + case.path.format(**(case.path_parameters or {})).replace(
            "/apply", "/plan"), json=body["fleet"], auth=AUTH, timeout=60)
        if r.status_code == 200:
            body["fingerprint"] = r.json()["fingerprint"]


def _fleet(body):
    # Each declared object follows its own schema (the document says so in
    # prose); a generated one is left out. Nothing is pruned: the run's own
    # objects stay.
    for k in ("networks", "templates", "instances"):
        if k in body:
            body[k] = []
    body["prune"] = False
    if isinstance(body.get("rollout"), dict):
        _health(body["rollout"])


def _rollout(body):
    sel = body.get("selector")
    if isinstance(sel, dict):
        if sel.get("instanceIds"):
            sel["instanceIds"] = [INSTANCE]
        for k, v in (("instanceSettingsTemplateId", TEMPLATE), ("virtualNetworkId", NETWORK),
                     ("imageId", IMAGE)):
            if sel.get(k) is not None:
                sel[k] = v
        if sel.get("dssNodeType") is not None:
            sel["dssNodeType"] = "design"
        sel.pop("fmTags", None)
        criteria = ("instanceIds", "instanceSettingsTemplateId", "virtualNetworkId", "imageId",
                    "dssNodeType")
        if not any(sel.get(k) for k in criteria):
            sel["all"] = True
    action = body.get("action")
    if isinstance(action, dict) and action.get("type") == "UPGRADE":
        action["imageId"] = IMAGE
    _health(body)


def _health(body):
    # The defaults: 10 and 600.
    h, most = body.get("healthSeconds", 10), body.get("healthTimeoutSeconds", 600)
    num = (int, float)
    if isinstance(h, num) and isinstance(most, num) and most < h:
        body["healthTimeoutSeconds"] = h
