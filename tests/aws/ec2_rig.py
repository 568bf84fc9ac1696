"""An EC2 test rig: the moto emulator, a fault-injecting proxy in front of it,
and a player of the VMs the emulator only pretends to run.

    python ec2_rig.py --root DIR --agent-bin PATH [--port 0] [--regions R,...] [--no-vms]

Prints one line `READY proxy=PORT moto=PORT` once it serves. FM talks to the
proxy port; tests may read the emulator directly on the moto port (those
calls are neither counted nor faulted).

The proxy
- counts EC2 calls per action (`GET /rig/stats`, `POST /rig/reset-stats`);
- fails the next call of an action with a given error (`POST /rig/config`
  with `{"failNext": {"RunInstances": {"status": 400, "code": ..., "message": ...}}}`);
- injects faults on a share of EC2 calls (`POST /rig/config` with
  `{"faultRate": 0.2}`): `RequestLimitExceeded` (HTTP 503) or `InternalError`
  (HTTP 500) before the call reaches the emulator, or, for calls that change
  something, an `InternalError` after the emulator did the work (the answer
  is lost);
- plays EBS data synchronously: a data volume is a directory
  (`volumes/<vol-id>`), `CreateSnapshot` copies it to `snapshots/<snap-id>`,
  `CreateVolume` from a snapshot copies it back.

The VM player starts a real `fm-agent` for each running emulated instance
once its data volume is attached, with the settings read back from the
instance's user-data through the EC2 API (the boot script's
`FM_AGENT_TOML` block, paths moved into the rig's directory), and stops its
processes when the instance is stopped or terminated, as a VM would. An agent
that dies on a running instance is restarted, as an init system would.
"""

import argparse
import base64
import datetime
import http.client
import http.server
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import tomllib
import urllib.parse

import boto3
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID
from moto.server import ThreadedMotoServer

OWNER_TAG = "fleet-manager:owner"
VOLUME_TAG = "fleet-manager:volume"
MUTATING = re.compile(
    r"^(Run|Start|Stop|Terminate|Create|Delete|Attach|Detach|Allocate|Associate|"
    r"Disassociate|Release|Authorize|Revoke|Modify)"
)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ec2_error(code, message):
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Response><Errors><Error><Code>{code}</Code><Message>{message}</Message>"
        f"</Error></Errors><RequestID>rig-{random.getrandbits(32):08x}</RequestID></Response>"
    ).encode()



def copy_tree(src, dst):
    """A copy that keeps owners, as an EBS snapshot does (the node's files
    stay its user's)."""
    shutil.copytree(src, dst, symlinks=True)
    if os.geteuid() != 0:
        return
    for top, dirs, files in os.walk(src):
        for name in [None, *dirs, *files]:
            s = top if name is None else os.path.join(top, name)
            st = os.lstat(s)
            os.lchown(os.path.join(dst, os.path.relpath(s, src)), st.st_uid, st.st_gid)

class Rig:
    def __init__(self, root, agent_bin, moto_port, regions):
        self.root = root
        self.agent_bin = agent_bin
        self.moto_port = moto_port
        self.regions = regions
        self.lock = threading.Lock()
        self.calls = {}
        self.faults = {}
        self.fault_rate = 0.0
        # action -> (HTTP status, code, message): the next such call fails.
        self.fail_next = {}
        self.rng = random.Random(int(os.environ.get("RIG_SEED", "7")))
        # instance id -> {"pid": int, "groups": [session ids]}
        self.agents = {}
        self.poke = threading.Event()
        for d in ("vms", "volumes", "snapshots"):
            os.makedirs(os.path.join(root, d), exist_ok=True)
        # The rig's own stand-in for AWS's identity-document certificate (FM
        # is given it as FM_AWS_IDENTITY_CERTS), and an untrusted key for
        # forged documents.
        self.identity_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.forger_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ec2-rig identity documents")])
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.identity_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=3650))
            .sign(self.identity_key, hashes.SHA256())
        )
        with open(os.path.join(root, "identity-cert.pem"), "wb") as f:
            f.write(cert.public_bytes(serialization.Encoding.PEM))
        self.proxy_port = 0
        # instance id -> region, for the identity documents
        self.regions_of = {}
        # What FM asked STS for: AssumeRole's parameters, in order.
        self.assumed = []

    BACKUP_BUCKET = "fm-backups"

    def client(self, region, service="ec2"):
        return boto3.client(
            service,
            region_name=region,
            endpoint_url=f"http://127.0.0.1:{self.moto_port}",
            aws_access_key_id="AKIAIOSFODNN7EXAMPLE",
            aws_secret_access_key="wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        )

    # ------------------------------------------------------------- faults

    def pick_fault(self, action):
        with self.lock:
            if action in self.fail_next:
                return self.fail_next.pop(action)
            if self.fault_rate <= 0 or self.rng.random() >= self.fault_rate:
                return None
            kinds = ["throttle", "error-before"]
            if MUTATING.match(action):
                kinds.append("error-after")
            kind = self.rng.choice(kinds)
            key = f"{action}:{kind}"
            self.faults[key] = self.faults.get(key, 0) + 1
            return kind

    def count(self, action):
        with self.lock:
            self.calls[action] = self.calls.get(action, 0) + 1

    # --------------------------------------------------------- EBS data

    def vol_dir(self, vol):
        return os.path.join(self.root, "volumes", vol)

    def snap_dir(self, snap):
        return os.path.join(self.root, "snapshots", snap)

    def after_call(self, action, params, body):
        text = body.decode("utf-8", "replace")

        def field(name):
            m = re.search(f"<{name}>([^<]+)</{name}>", text)
            return m.group(1) if m else None

        if action == "CreateVolume":
            vol = field("volumeId")
            snap = params.get("SnapshotId")
            if vol:
                if snap and os.path.isdir(self.snap_dir(snap)):
                    copy_tree(self.snap_dir(snap), self.vol_dir(vol))
                else:
                    os.makedirs(self.vol_dir(vol), exist_ok=True)
        elif action == "CreateSnapshot":
            snap, vol = field("snapshotId"), params.get("VolumeId")
            if snap and vol:
                src = self.vol_dir(vol)
                if os.path.isdir(src):
                    copy_tree(src, self.snap_dir(snap))
                else:
                    os.makedirs(self.snap_dir(snap), exist_ok=True)
        elif action == "DeleteVolume":
            shutil.rmtree(self.vol_dir(params.get("VolumeId", "none")), ignore_errors=True)
        elif action == "DeleteSnapshot":
            shutil.rmtree(self.snap_dir(params.get("SnapshotId", "none")), ignore_errors=True)
        elif action in ("StopInstances", "TerminateInstances"):
            for k, v in params.items():
                if k.startswith("InstanceId."):
                    self.halt(v)
                    if action == "TerminateInstances":
                        shutil.rmtree(os.path.join(self.root, "vms", v), ignore_errors=True)
        if action in ("RunInstances", "StartInstances", "AttachVolume"):
            self.poke.set()

    # -------------------------------------------------------------- VMs

    @staticmethod
    def session_members(sid):
        """Live processes of session `sid`: a VM's agent, its commands and
        the node it started, whatever process groups they made."""
        out = []
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                with open(f"/proc/{pid}/stat") as f:
                    rest = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if rest[3] == str(sid) and rest[0] not in ("Z", "X"):
                out.append(int(pid))
        return out

    def signal_sessions(self, sids, sig):
        for sid in sids:
            for pid in self.session_members(sid):
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass

    def halt(self, iid):
        with self.lock:
            rec = self.agents.pop(iid, None)
        if not rec:
            return
        self.signal_sessions(rec["groups"], signal.SIGTERM)
        deadline = time.time() + 10
        while time.time() < deadline and any(self.session_members(g) for g in rec["groups"]):
            time.sleep(0.05)
        self.signal_sessions(rec["groups"], signal.SIGKILL)
        if rec.get("proc"):
            try:
                rec["proc"].wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass

    def boot(self, ec2, iid):
        vols = ec2.describe_volumes(
            Filters=[{"Name": "attachment.instance-id", "Values": [iid]}]
        )["Volumes"]
        data = [v for v in vols if any(t["Key"] == VOLUME_TAG for t in v.get("Tags", []))]
        if not data:
            return  # the boot script waits for its volume
        vol = data[0]["VolumeId"]
        ud = ec2.describe_instance_attribute(InstanceId=iid, Attribute="userData")
        script = base64.b64decode(ud.get("UserData", {}).get("Value", "") or b"").decode()
        m = re.search(r"<<'FM_AGENT_TOML'\n(.*?)\nFM_AGENT_TOML\n", script, re.S)
        if not m:
            print(f"rig: instance {iid} has no agent settings in its user-data", flush=True)
            return
        settings = tomllib.loads(m.group(1))
        vm_dir = os.path.join(self.root, "vms", iid)
        os.makedirs(os.path.join(vm_dir, "home"), exist_ok=True)
        os.makedirs(self.vol_dir(vol), exist_ok=True)
        settings["state_dir"] = os.path.join(vm_dir, "agent")
        settings["home_dir"] = os.path.join(vm_dir, "home")
        settings["data_dir"] = os.path.join(
            self.vol_dir(vol), os.path.basename(settings.get("data_dir", "data").rstrip("/"))
        )
        self.place_node_user(settings, vm_dir, self.vol_dir(vol))
        with self.lock:
            self.regions_of[iid] = ec2.meta.region_name
        if settings.get("imds_url"):
            settings["imds_url"] = f"http://127.0.0.1:{self.proxy_port}/imds/{iid}"
        path = os.path.join(vm_dir, "user-data.toml")
        # It holds the enrollment token: readable by its owner only.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            for k, v in settings.items():
                f.write(f"{k} = {json.dumps(v)}\n")
        log = open(os.path.join(vm_dir, "agent.log"), "ab")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("FM_", "AWS_"))}
        proc = subprocess.Popen(
            [self.agent_bin, "--user-data", path],
            cwd=vm_dir,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            env=env,
            start_new_session=True,
        )
        log.close()
        with self.lock:
            rec = self.agents.setdefault(iid, {"groups": []})
            rec["pid"] = proc.pid
            rec["proc"] = proc
            rec["groups"].append(proc.pid)

    IMDS_TOKEN = "rig-imds-session"

    def identity(self, iid, forged=False):
        """The instance identity document of `iid` as IMDS serves it, and its
        base64 RSA SHA-256 signature (by the rig's key, or an untrusted one)."""
        with self.lock:
            region = self.regions_of.get(iid, self.regions[0])
        doc = json.dumps({
            "accountId": "123456789012",
            "architecture": "x86_64",
            "availabilityZone": region + "a",
            "imageId": "ami-0fa1ca7e5e1f00d00",
            "instanceId": iid,
            "instanceType": "t3.medium",
            "pendingTime": "2026-01-01T00:00:00Z",
            "region": region,
            "version": "2017-09-30",
        }, indent=2)
        key = self.forger_key if forged else self.identity_key
        sig = base64.encodebytes(key.sign(doc.encode(), padding.PKCS1v15(), hashes.SHA256())).decode()
        return doc, sig

    def place_node_user(self, settings, vm_dir, vol_dir):
        """What the boot script does for the node's user: the image has a
        `dataiku` user, this host doesn't, so as root the rig runs nodes as
        uid/gid 64100 (as the local cloud does) and gives it the volume; not
        as root, or when the user can't pass through to the VM's dirs, the
        agent's own user."""
        if os.geteuid() != 0:
            settings.pop("node_user", None)
            return
        for d in (self.root, os.path.join(self.root, "vms"), os.path.join(self.root, "volumes"), vm_dir):
            os.chmod(d, 0o711)
        parent = os.path.dirname(os.path.abspath(self.root))
        while True:
            if not os.stat(parent).st_mode & 0o001:
                settings.pop("node_user", None)
                return
            if parent == "/":
                break
            parent = os.path.dirname(parent)
        settings["node_user"] = "64100:64100"
        os.chown(vol_dir, 64100, 64100)

    def play(self):
        clients = {r: self.client(r) for r in self.regions}
        while True:
            self.poke.wait(0.25)
            self.poke.clear()
            seen = set()
            try:
                for ec2 in clients.values():
                    seen |= self.play_region(ec2)
            except Exception as e:  # the emulator may be resetting
                print(f"rig: VM player: {e}", flush=True)
                continue
            # Instances the emulator no longer knows (it was reset) are gone.
            with self.lock:
                gone = [iid for iid in self.agents if iid not in seen]
            for iid in gone:
                self.halt(iid)

    def play_region(self, ec2):
        seen = set()
        pager = ec2.get_paginator("describe_instances").paginate(
            Filters=[{"Name": "tag-key", "Values": [OWNER_TAG]}]
        )
        for r in (r for page in pager for r in page["Reservations"]):
            for i in r["Instances"]:
                iid, state = i["InstanceId"], i["State"]["Name"]
                seen.add(iid)
                with self.lock:
                    rec = self.agents.get(iid)
                alive = rec is not None and rec["proc"].poll() is None
                if state in ("pending", "running"):
                    if not alive:
                        self.boot(ec2, iid)
                elif rec is not None:
                    self.halt(iid)
        return seen

    def owned(self):
        """What FM's ownership tags mark in every region, read through the
        EC2 API: live instances, volumes, snapshots, security groups and
        addresses, each as {id, instance, tags}."""
        out = {"instances": [], "volumes": [], "snapshots": [], "securityGroups": [], "addresses": []}
        flt = [{"Name": "tag-key", "Values": [OWNER_TAG]}]

        def item(rid, tags):
            t = {x["Key"]: x["Value"] for x in tags or []}
            return {"id": rid, "instance": t.get("fleet-manager:instance"), "tags": t}

        def pages(ec2, op, key, **kw):
            for page in ec2.get_paginator(op).paginate(**kw):
                yield from page[key]

        for region in self.regions:
            ec2 = self.client(region)
            for r in pages(ec2, "describe_instances", "Reservations", Filters=flt):
                for i in r["Instances"]:
                    if i["State"]["Name"] not in ("terminated", "shutting-down"):
                        out["instances"].append(item(i["InstanceId"], i.get("Tags")))
            for v in pages(ec2, "describe_volumes", "Volumes", Filters=flt):
                out["volumes"].append(item(v["VolumeId"], v.get("Tags")))
            for sn in pages(ec2, "describe_snapshots", "Snapshots", OwnerIds=["self"], Filters=flt):
                out["snapshots"].append(item(sn["SnapshotId"], sn.get("Tags")))
            for g in pages(ec2, "describe_security_groups", "SecurityGroups", Filters=flt):
                out["securityGroups"].append(item(g["GroupId"], g.get("Tags")))
            for a in ec2.describe_addresses(Filters=flt)["Addresses"]:
                out["addresses"].append(item(a["AllocationId"], a.get("Tags")))
        return out

    def defaults(self, region):
        """The emulator's default VPC and a subnet of it."""
        ec2 = self.client(region)
        vpc = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"][0]["VpcId"]
        subnet = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["Subnets"][0]["SubnetId"]
        return {
            "region": region,
            "vpcId": vpc,
            "subnetId": subnet,
            # S3 for instance backups: the emulator itself, not the EC2 proxy.
            "s3Endpoint": f"http://127.0.0.1:{self.moto_port}",
            "s3Bucket": self.BACKUP_BUCKET,
        }

    def make_backup_bucket(self):
        self.client("us-east-1", "s3").create_bucket(Bucket=self.BACKUP_BUCKET)

    def stop_all(self):
        for iid in list(self.agents):
            self.halt(iid)


def make_handler(rig):
    class Proxy(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def reply(self, status, body, ctype="application/json"):
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def imds(self):
            """IMDSv2 of one emulated instance: /imds/<iid>/latest/..."""
            parts = self.path.split("/", 3)
            iid, rest = parts[2], "/" + (parts[3] if len(parts) > 3 else "")
            if self.command == "PUT" and rest == "/latest/api/token":
                return self.reply(200, rig.IMDS_TOKEN.encode(), "text/plain")
            if self.headers.get("X-aws-ec2-metadata-token") != rig.IMDS_TOKEN:
                return self.reply(401, b"", "text/plain")
            doc, sig = rig.identity(iid)
            if rest == "/latest/dynamic/instance-identity/document":
                return self.reply(200, doc.encode(), "text/plain")
            if rest == "/latest/dynamic/instance-identity/signature":
                return self.reply(200, sig.encode(), "text/plain")
            return self.reply(404, b"", "text/plain")

        def do_PUT(self):
            if self.path.startswith("/imds/"):
                return self.imds()
            n = int(self.headers.get("Content-Length") or 0)
            self.forward(self.rfile.read(n) if n else b"")

        def do_GET(self):
            if self.path.startswith("/imds/"):
                return self.imds()
            if self.path.startswith("/rig/identity/"):
                # A signed document as IMDS serves it; ?forged=1: signed by an
                # untrusted key.
                path, _, query = self.path.partition("?")
                doc, sig = rig.identity(path.rsplit("/", 1)[1], forged="forged=1" in query)
                return self.reply(200, json.dumps({"document": doc, "signature": sig}).encode())
            if self.path == "/rig/stats":
                with rig.lock:
                    body = {
                        "calls": dict(rig.calls),
                        "faults": dict(rig.faults),
                        "agents": {k: v["pid"] for k, v in rig.agents.items()},
                    }
                return self.reply(200, json.dumps(body).encode())
            if self.path == "/rig/assumed":
                with rig.lock:
                    return self.reply(200, json.dumps(rig.assumed).encode())
            if self.path == "/rig/owned":
                return self.reply(200, json.dumps(rig.owned()).encode())
            if self.path.startswith("/rig/defaults/"):
                region = self.path.rsplit("/", 1)[1]
                return self.reply(200, json.dumps(rig.defaults(region)).encode())
            self.forward(b"")

        def do_POST(self):
            n = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(n) if n else b""
            if self.path == "/rig/config":
                cfg = json.loads(body or b"{}")
                with rig.lock:
                    rig.fault_rate = float(cfg.get("faultRate", rig.fault_rate))
                    for action, err in cfg.get("failNext", {}).items():
                        rig.fail_next[action] = (int(err["status"]), err["code"], err["message"])
                return self.reply(200, b"{}")
            if self.path == "/rig/reset-stats":
                with rig.lock:
                    rig.calls.clear()
                    rig.faults.clear()
                return self.reply(200, b"{}")
            if self.path == "/rig/ec2":
                # Someone else acting on an instance, straight to the emulator.
                cmd = json.loads(body)
                ec2 = rig.client(cmd.get("region", rig.regions[0]))
                if cmd["action"] == "CreateVolume":
                    tags = [{"Key": k, "Value": v} for k, v in cmd.get("tags", {}).items()]
                    zone = ec2.describe_availability_zones()["AvailabilityZones"][0]["ZoneName"]
                    v = ec2.create_volume(
                        AvailabilityZone=zone, Size=1,
                        TagSpecifications=[{"ResourceType": "volume", "Tags": tags}],
                    )
                    return self.reply(200, json.dumps({"id": v["VolumeId"]}).encode())
                method = {
                    "StopInstances": ec2.stop_instances,
                    "StartInstances": ec2.start_instances,
                    "TerminateInstances": ec2.terminate_instances,
                }[cmd["action"]]
                method(InstanceIds=[cmd["instanceId"]])
                rig.poke.set()
                return self.reply(200, b"{}")
            if self.path == "/rig/stop-agents":
                rig.stop_all()
                return self.reply(200, b"{}")
            self.forward(body)

        def forward(self, body):
            params = {}
            ctype = self.headers.get("Content-Type", "")
            if "x-www-form-urlencoded" in ctype:
                params = dict(urllib.parse.parse_qsl(body.decode()))
            action = params.get("Action")
            is_ec2 = action is not None and params.get("Version") == "2016-11-15"
            if action:
                rig.count(action)
            if action == "AssumeRole":
                with rig.lock:
                    rig.assumed.append({k: params.get(k) for k in ("RoleArn", "RoleSessionName", "Policy", "DurationSeconds")})
            fault = rig.pick_fault(action) if is_ec2 else None
            if isinstance(fault, tuple):
                status, code, message = fault
                return self.reply(status, ec2_error(code, message), "text/xml")
            if fault == "throttle":
                return self.reply(503, ec2_error("RequestLimitExceeded", "Request limit exceeded."), "text/xml")
            if fault == "error-before":
                return self.reply(500, ec2_error("InternalError", "An internal error has occurred"), "text/xml")
            conn = http.client.HTTPConnection("127.0.0.1", rig.moto_port, timeout=120)
            headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
            conn.request(self.command, self.path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            conn.close()
            if action and resp.status == 200:
                rig.after_call(action, params, data)
            if fault == "error-after":
                return self.reply(500, ec2_error("InternalError", "An internal error has occurred"), "text/xml")
            self.send_response(resp.status)
            for k, v in resp.getheaders():
                if k.lower() not in ("content-length", "connection", "transfer-encoding", "server", "date"):
                    self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Proxy


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", required=True)
    ap.add_argument("--agent-bin", required=True)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--regions", default="eu-west-1,us-east-1")
    ap.add_argument("--no-vms", action="store_true", help="run no agents (benchmarks of EC2 calls)")
    a = ap.parse_args()

    moto_port = free_port()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=moto_port, verbose=False)
    moto.start()
    rig = Rig(os.path.abspath(a.root), a.agent_bin, moto_port, a.regions.split(","))
    rig.make_backup_bucket()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", a.port), make_handler(rig))
    server.daemon_threads = True
    rig.proxy_port = server.server_address[1]

    def bye(*_):
        rig.stop_all()
        os._exit(0)

    signal.signal(signal.SIGTERM, bye)
    signal.signal(signal.SIGINT, bye)
    if not a.no_vms:
        threading.Thread(target=rig.play, daemon=True).start()
    print(f"READY proxy={server.server_address[1]} moto={moto_port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
