"""Fixtures for the end-to-end suite: a real `fleet-manager serve` per backend
(SQLite, PostgreSQL), an API key made with `fleet-manager admin
create-api-key`, the public Python client bound to it, and a raw HTTP helper
for what the client can't express (bad input, status codes).

Environment:
  FM_BIN              the fleet-manager binary (default:
                      $CARGO_TARGET_DIR/debug/fleet-manager, else
                      <repo>/target/debug/fleet-manager)
  FM_TEST_PG_URL      an admin URL of a PostgreSQL server (default
                      postgres://postgres:postgres@127.0.0.1:5432/postgres);
                      a fresh database fm_pytest_<random> is made per session
  FM_TEST_REQUIRE_PG  "1": fail (instead of skip) when PostgreSQL is unreachable
  FM_TEST_LOG         the server's FM_LOG filter (default: info + access log)

The lifecycle module also runs on the `aws` cloud: FM on SQLite provisioning
through the AWS SDK against the EC2 emulator of tests/aws/ec2_rig.py, which
runs a real fm-agent for each emulated instance.
"""

import base64
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import uuid
from pathlib import Path

import pytest
import requests
from dataikuapi.fmclient import FMClientAWS

REPO_ROOT = Path(__file__).resolve().parents[2]
TENANT = "main"
READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0
HTTP_TIMEOUT_S = 60.0
# Calls that start an operation wait this long for it to finish, so quick
# operations (all deletions here) come back as finished futures and the
# client's FMFuture.wait_for_result never has to sleep its 5 s poll.
FUTURE_WAIT_MS = "5000"
DEFAULT_PG_URL = "postgres://postgres:postgres@127.0.0.1:5432/postgres"


# --------------------------------------------------------------------------
# locating and running the binary


def fm_binary() -> Path:
    explicit = os.environ.get("FM_BIN")
    if explicit:
        return Path(explicit)
    target = os.environ.get("CARGO_TARGET_DIR")
    if target:
        return Path(target) / "debug" / "fleet-manager"
    return REPO_ROOT / "target" / "debug" / "fleet-manager"


def server_env() -> dict:
    """The environment for the binary: ours, minus any FM_* setting that
    would make the server read another store, config file or key."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FM_")}
    env["FM_FUTURE_WAIT_MS"] = FUTURE_WAIT_MS
    env["FM_AGENT_LISTEN"] = f"127.0.0.1:{free_port()}"
    env["FM_GRPC_LISTEN"] = f"127.0.0.1:{free_port()}"
    # Lifecycle tests: quick heartbeats, node ports away from common ones.
    env["FM_HEARTBEAT_SECS"] = "2"
    env["FM_LOCAL_PORT_BASE"] = "23000"
    env["NO_COLOR"] = "1"  # plain server logs (shown when a test fails)
    env["FM_LOG"] = os.environ.get(
        "FM_TEST_LOG", "info,sqlx=warn,sea_orm=warn,fleet_manager::api=debug"
    )
    return env


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tail(path: Path, n: int = 60) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(lines[-n:])


# --------------------------------------------------------------------------
# what the suite sent: every request of every client (the public client and
# the raw helper both go through requests.Session.send), kept to check the
# audit log against at the end of the session


class Sent:
    def __init__(self, port, method, path, status, key_id, request_id):
        self.port, self.method, self.path = port, method, path
        self.status, self.key_id, self.request_id = status, key_id, request_id

    def __repr__(self):
        return f"{self.method} {self.path} -> {self.status} (key {self.key_id}, request {self.request_id})"


SENT: list = []
_original_send = requests.Session.send


def _key_of(prepared) -> "str | None":
    auth = prepared.headers.get("Authorization", "")
    if not auth.startswith("Basic "):
        return None
    try:
        return base64.b64decode(auth[6:]).decode().split(":", 1)[0]
    except (ValueError, UnicodeDecodeError):
        return None


def _recording_send(self, prepared, **kwargs):
    response = _original_send(self, prepared, **kwargs)
    url = urllib.parse.urlsplit(prepared.url)
    if url.hostname == "127.0.0.1":
        SENT.append(Sent(url.port, prepared.method, url.path, response.status_code,
                         _key_of(prepared), response.headers.get("X-Request-Id")))
    return response


requests.Session.send = _recording_send


# --------------------------------------------------------------------------
# PostgreSQL


def _psql(url: str, sql: str, timeout: float = 20.0) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["psql", url, "-v", "ON_ERROR_STOP=1", "-X", "-q", "-c", sql],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PGCONNECT_TIMEOUT": "5"},
    )


def _with_database(url: str, dbname: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(parts._replace(path="/" + dbname))


def _pg_unavailable(reason: str):
    if os.environ.get("FM_TEST_REQUIRE_PG") == "1":
        pytest.fail(f"PostgreSQL is required (FM_TEST_REQUIRE_PG=1) but {reason}")
    pytest.skip(f"PostgreSQL backend skipped: {reason} (set FM_TEST_REQUIRE_PG=1 to fail instead)")


class PgDatabase:
    """A fresh database on the server named by FM_TEST_PG_URL."""

    def __init__(self):
        self.admin_url = os.environ.get("FM_TEST_PG_URL", DEFAULT_PG_URL)
        self.name = "fm_pytest_" + secrets.token_hex(6)
        self.url = _with_database(self.admin_url, self.name)
        self.created = False

    def create(self):
        if shutil.which("psql") is None:
            _pg_unavailable("the psql command is not installed")
        try:
            probe = _psql(self.admin_url, "SELECT 1")
        except subprocess.TimeoutExpired:
            _pg_unavailable(f"psql timed out connecting to {self._redacted()}")
        if probe.returncode != 0:
            _pg_unavailable(
                f"can't connect to {self._redacted()}: {probe.stderr.strip()}"
            )
        res = _psql(self.admin_url, f'CREATE DATABASE "{self.name}"')
        if res.returncode != 0:
            pytest.fail(f"CREATE DATABASE {self.name} failed: {res.stderr.strip()}")
        self.created = True

    def drop(self):
        if not self.created:
            return
        res = _psql(self.admin_url, f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
        if res.returncode != 0:
            # PostgreSQL before 13 has no WITH (FORCE).
            res = _psql(self.admin_url, f'DROP DATABASE IF EXISTS "{self.name}"')
        if res.returncode != 0:
            raise RuntimeError(f"DROP DATABASE {self.name} failed: {res.stderr.strip()}")
        self.created = False

    def _redacted(self) -> str:
        parts = urllib.parse.urlsplit(self.admin_url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
        user = f"{parts.username}@" if parts.username else ""
        return f"{parts.scheme}://{user}{host}{port}{parts.path}"


# --------------------------------------------------------------------------
# the server


class FmServer:
    """A running `fleet-manager serve` and the API key to talk to it."""

    def __init__(self, backend: str, binary: Path, data_dir: Path, database_url, extra_env=None):
        self.backend = backend
        self.extra_env = extra_env or {}
        # Where the processes of this server's VMs run from (agents, nodes).
        self.vms_dir = data_dir / "local-cloud"
        self.rig = None
        self.binary = binary
        self.data_dir = data_dir
        self.database_url = database_url
        self.log_path = data_dir / "server.log"
        self.proc = None
        self.port = None
        self.key_id = None
        self.secret = None
        # Every secret this session made (keys' secrets, passwords): none may
        # reach a log. Which user each key id belongs to.
        self.secrets: list = []
        self.key_users: dict = {}

    # -- helpers for tests

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def tenant_url(self, path: str, tenant: str = TENANT) -> str:
        return f"{self.base_url}/api/public/tenants/{tenant}{path}"

    def log_tail(self, n: int = 60) -> str:
        return tail(self.log_path, n)

    # -- lifecycle

    def _store_args(self) -> list:
        args = ["--data-dir", str(self.data_dir)]
        if self.database_url:
            args += ["--database-url", self.database_url]
        return args

    def create_api_key(self):
        res = subprocess.run(
            [str(self.binary), "admin", "create-api-key", *self._store_args(), "--label", "pytest"],
            capture_output=True,
            text=True,
            timeout=60,
            env={**server_env(), **self.extra_env},
        )
        if res.returncode != 0:
            pytest.fail(
                f"`fleet-manager admin create-api-key` failed ({res.returncode}):\n{res.stderr}"
            )
        lines = [l for l in res.stdout.splitlines() if l.strip()]
        assert len(lines) == 1, f"create-api-key must print exactly one line, got: {res.stdout!r}"
        key = json.loads(lines[0])
        assert isinstance(key.get("id"), str) and key["id"], key
        assert isinstance(key.get("secret"), str) and key["secret"], key
        self.key_id, self.secret = key["id"], key["secret"]
        self.secrets.append(key["secret"])
        self.key_users[key["id"]] = "admin"

    def admin(self, *args) -> dict:
        """Runs `fleet-manager admin ARGS` on this server's store; the JSON
        object it printed."""
        res = subprocess.run(
            [str(self.binary), "admin", *args[:1], *self._store_args(), *args[1:]],
            capture_output=True,
            text=True,
            timeout=60,
            env={**server_env(), **self.extra_env},
        )
        if res.returncode != 0:
            pytest.fail(f"`fleet-manager admin {args[0]}` failed ({res.returncode}):\n{res.stderr}")
        out = json.loads(res.stdout.splitlines()[0])
        if isinstance(out, dict):
            self.secrets += [out[k] for k in ("secret", "password") if isinstance(out.get(k), str)]
        return out

    def user_key(self, name: str, role: str):
        """A new user with `role` and a key of theirs: (key id, secret),
        once the running server knows the key (it rereads its keys at most
        once a second when an unknown one is presented)."""
        self.admin("create-user", name, "--role", role)
        key = self.admin("create-api-key", "--user", name)
        self.key_users[key["id"]] = name
        auth = (key["id"], key["secret"])
        deadline = time.monotonic() + 5
        while requests.get(self.tenant_url("/images"), auth=auth, timeout=HTTP_TIMEOUT_S).status_code == 401:
            assert time.monotonic() < deadline, "the server never took the new key"
            time.sleep(0.2)
        return auth

    def start(self):
        last_error = None
        for _attempt in range(3):
            self.port = free_port()
            self.grpc_port = free_port()
            log = open(self.log_path, "ab")
            try:
                self.proc = subprocess.Popen(
                    [
                        str(self.binary),
                        "serve",
                        *self._store_args(),
                        "--listen",
                        f"127.0.0.1:{self.port}",
                    ],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                    env={
                        **server_env(),
                        "FM_GRPC_LISTEN": f"127.0.0.1:{self.grpc_port}",
                        **self.extra_env,
                    },
                )
            finally:
                log.close()
            last_error = self._wait_ready()
            if last_error is None:
                return
            self._kill()
        pytest.fail(
            f"fleet-manager ({self.backend}) did not become ready: {last_error}\n"
            f"--- server log ---\n{self.log_tail()}"
        )

    def _wait_ready(self):
        """None when the server answers an authenticated GET /images with 200;
        otherwise why not."""
        deadline = time.monotonic() + READY_TIMEOUT_S
        url = self.tenant_url("/images")
        last = "no answer"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return f"the server exited with status {self.proc.returncode}"
            try:
                r = requests.get(url, auth=(self.key_id, self.secret), timeout=2)
                if r.status_code == 200:
                    return None
                last = f"HTTP {r.status_code}: {r.text[:200]}"
            except requests.RequestException as e:
                last = repr(e)
            time.sleep(0.1)
        return f"timed out after {READY_TIMEOUT_S:.0f} s (last: {last})"

    def audit_log(self) -> list:
        """The tenant's whole audit log, oldest first."""
        rows, token = [], None
        while True:
            params = {"limit": "1000", **({"pageToken": token} if token else {})}
            r = requests.get(self.tenant_url("/audit-log"), params=params,
                             auth=(self.key_id, self.secret), timeout=HTTP_TIMEOUT_S)
            assert r.status_code == 200, (r.status_code, r.text)
            rows += r.json()
            token = r.headers.get("Next-Page-Token")
            if not token:
                return list(reversed(rows))

    def check_audit_log(self):
        """Every change the suite asked of this server (each non-GET request
        a known key made) is in the audit log under the request's id, with
        the key's user, the status answered and the outcome that status
        means; a refused one (403) as refused. No row holds a secret the
        suite made."""
        rows = self.audit_log()
        dump = json.dumps(rows)
        leaked = [f"{secret[:3]}..." for secret in self.secrets if secret in dump]
        assert not leaked, f"the audit log holds secrets: {leaked}"
        by_request = {row["requestId"]: row for row in rows}
        asked = [s for s in SENT if s.port == self.port and s.method != "GET"
                 and s.key_id in self.key_users and s.status != 401]
        assert asked, "the suite made no change on this server"
        wrong = []
        for s in asked:
            row = by_request.get(s.request_id)
            outcome = ("ok" if s.status < 400 else "refused" if s.status == 403 else "failed")
            expected = (self.key_users[s.key_id], s.method, s.path, s.status, outcome)
            got = row and (row["actor"], row["method"], row["path"], row["status"], row["outcome"])
            if got != expected:
                wrong.append(f"{s}: expected {expected}, audit row {got}")
        assert not wrong, f"{len(wrong)} of {len(asked)} changes not audited as made:\n" + "\n".join(wrong[:20])

    def check_logs_hold_no_secret(self):
        """No secret this session made is in any log the server, its agents,
        its nodes or the EC2 rig wrote."""
        assert self.secrets, "the session made no secret"
        logs = [p for p in self.data_dir.rglob("*") if p.is_file() and
                (p.suffix == ".log" or p.name.endswith((".log.1", ".out", ".err")))]
        assert self.log_path in logs
        found = []
        for path in logs:
            text = path.read_text(errors="replace")
            found += [f"{path}: a secret ({secret[:3]}...)" for secret in self.secrets if secret in text]
        assert not found, "\n".join(found)

    def _kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=STOP_TIMEOUT_S)

    def stop(self):
        """Stops the server with SIGTERM (graceful shutdown) and checks that it
        exited, and exited cleanly."""
        if self.proc is None:
            return
        proc, self.proc = self.proc, None
        if proc.poll() is not None:
            raise AssertionError(
                f"fleet-manager ({self.backend}) died during the session with status "
                f"{proc.returncode}\n--- server log ---\n{self.log_tail()}"
            )
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=STOP_TIMEOUT_S)
            raise AssertionError(
                f"fleet-manager ({self.backend}) ignored SIGTERM for {STOP_TIMEOUT_S:.0f} s; killed"
            )
        finally:
            # A failed lifecycle test may leave local VMs behind (their agents
            # and nodes outlive FM, as VMs do): take them down too.
            subprocess.run(["pkill", "-KILL", "-f", str(self.vms_dir)], check=False)
        assert code == 0, (
            f"fleet-manager ({self.backend}) exited with status {code} after SIGTERM\n"
            f"--- server log ---\n{self.log_tail()}"
        )


class Ec2Rig:
    """tests/aws/ec2_rig.py: the EC2 emulator behind a counting proxy, and a
    real fm-agent per emulated instance."""

    REGION = "eu-west-1"

    def __init__(self, root: Path, agent_bin: Path):
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.log_path = root / "rig.log"
        log = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(
                [sys.executable, str(REPO_ROOT / "tests" / "aws" / "ec2_rig.py"),
                 "--root", str(root), "--agent-bin", str(agent_bin)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log,
            )
        finally:
            log.close()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            for line in tail(self.log_path, 200).splitlines():
                if line.startswith("READY proxy="):
                    self.url = "http://127.0.0.1:" + line.split()[1].split("=")[1]
                    return
            if self.proc.poll() is not None:
                pytest.fail(f"the EC2 rig exited:\n{tail(self.log_path)}")
            time.sleep(0.1)
        pytest.fail(f"the EC2 rig did not start:\n{tail(self.log_path)}")

    def owned(self) -> dict:
        return requests.get(self.url + "/rig/owned", timeout=60).json()

    def fm_env(self) -> dict:
        d = requests.get(f"{self.url}/rig/defaults/{self.REGION}", timeout=60).json()
        return {
            "FM_CLOUD": "aws",
            "FM_AWS_ENDPOINT_URL": self.url,
            "FM_AWS_AMIS": "ami-0fa1ca7e5e1f00d00",
            "FM_AWS_NODE_HOST": "127.0.0.1",
            "FM_AWS_BACKOFF_MS": "20",
            "FM_AWS_IDENTITY_CERTS": str(self.root / "identity-cert.pem"),
            "AWS_ACCESS_KEY_ID": "AKIAIOSFODNN7EXAMPLE",
            "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            "FM_DEFAULT_REGION": d["region"],
            "FM_DEFAULT_VPC_ID": d["vpcId"],
            "FM_DEFAULT_SUBNET_ID": d["subnetId"],
            "FM_BACKUP_URL": f"s3://{d['s3Bucket']}/fleet",
            "FM_BACKUP_S3_ENDPOINT": d["s3Endpoint"],
            "FM_BACKUP_S3_REGION": "us-east-1",
            "FM_BACKUP_S3_ACCESS_KEY_ID": "AKIAIOSFODNN7EXAMPLE",
            "FM_BACKUP_S3_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            # Each backup command's agent gets credentials for its one backup.
            "FM_BACKUP_S3_ROLE_ARN": "arn:aws:iam::123456789012:role/fm-backups",
            "FM_BACKUP_STS_ENDPOINT": self.url,
        }

    def s3(self):
        """A boto3 S3 client on the emulator (to look at stored backups)."""
        import boto3

        d = requests.get(f"{self.url}/rig/defaults/{self.REGION}", timeout=60).json()
        return boto3.client(
            "s3",
            region_name="us-east-1",
            endpoint_url=d["s3Endpoint"],
            aws_access_key_id="AKIAIOSFODNN7EXAMPLE",
            aws_secret_access_key="wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        )

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def pytest_generate_tests(metafunc):
    """Every suite runs on SQLite and PostgreSQL; the lifecycle also on the
    `aws` cloud (SQLite, the EC2 emulator). The console's browser suite and
    the gRPC suite run once, on SQLite: they read through the same store
    calls the other suites run on both."""
    if "fm_server" in metafunc.fixturenames:
        backends = ["sqlite", "postgres"]
        if metafunc.module.__name__.endswith(("test_console", "test_grpc")):
            backends = ["sqlite"]
        if metafunc.module.__name__.endswith(("test_lifecycle", "test_backups")):
            backends.append("aws")
        metafunc.parametrize("fm_server", backends, indirect=True, scope="session")


@pytest.fixture(scope="session")
def fm_server(request):
    binary = fm_binary()
    if not binary.is_file() or not os.access(binary, os.X_OK):
        pytest.fail(
            f"fleet-manager binary not found at {binary}; build it with "
            "`cargo build -p fleet-manager` or set FM_BIN"
        )
    backend = request.param
    pg = None
    if backend == "postgres":
        pg = PgDatabase()
        pg.create()
    data_dir = Path(tempfile.mkdtemp(prefix=f"fm-pytest-{backend}-"))
    rig = None
    extra_env = {}
    if backend == "aws":
        rig = Ec2Rig(data_dir / "ec2", binary.parent / "fm-agent")
        extra_env = rig.fm_env()
    server = FmServer(backend, binary, data_dir, pg.url if pg else None, extra_env)
    if rig is not None:
        server.rig = rig
        server.vms_dir = rig.root
    try:
        server.create_api_key()
        server.start()
        yield server
        server.check_audit_log()
        server.stop()
        server.check_logs_hold_no_secret()
    finally:
        try:
            server.stop()
        finally:
            if rig is not None:
                rig.stop()
            try:
                if pg is not None:
                    pg.drop()
            finally:
                if os.environ.get("FM_TEST_KEEP_DATA") != "1":
                    shutil.rmtree(data_dir, ignore_errors=True)


# --------------------------------------------------------------------------
# clients


def _with_default_timeout(session: requests.Session):
    """The public client sets no timeout; a hung server must fail a test,
    not hang the suite."""
    original = session.request

    def request(method, url, **kwargs):
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = HTTP_TIMEOUT_S
        return original(method, url, **kwargs)

    session.request = request
    return session


@pytest.fixture
def client(fm_server):
    """The public Python client, authenticated with the session's API key."""
    c = FMClientAWS(fm_server.base_url, fm_server.key_id, fm_server.secret)
    _with_default_timeout(c._session)
    return c


@pytest.fixture
def make_client(fm_server):
    """Builds a public client with other credentials or another tenant."""

    def make(key_id=None, secret=None, tenant_id=TENANT):
        c = FMClientAWS(
            fm_server.base_url,
            fm_server.key_id if key_id is None else key_id,
            fm_server.secret if secret is None else secret,
            tenant_id=tenant_id,
        )
        _with_default_timeout(c._session)
        return c

    return make


class RawApi:
    """Raw HTTP calls with the session's API key, for what the public client
    can't express. Paths are relative to /api/public/tenants/main unless
    they start with /api/."""

    def __init__(self, server: FmServer):
        self.server = server
        self.auth = (server.key_id, server.secret)

    def url(self, path: str) -> str:
        if path.startswith("/api/"):
            return self.server.base_url + path
        return self.server.tenant_url(path)

    def request(self, method: str, path: str, *, auth=True, **kwargs) -> requests.Response:
        if auth is True:
            kwargs["auth"] = self.auth
        elif auth:
            kwargs["auth"] = auth
        kwargs.setdefault("timeout", HTTP_TIMEOUT_S)
        return requests.request(method, self.url(path), **kwargs)

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, **kw):
        return self.request("POST", path, **kw)

    def put(self, path, **kw):
        return self.request("PUT", path, **kw)

    def delete(self, path, **kw):
        return self.request("DELETE", path, **kw)

    def list(self, path: str) -> list:
        r = self.get(path)
        assert r.status_code == 200, (r.status_code, r.text)
        return r.json()


@pytest.fixture
def api(fm_server):
    return RawApi(fm_server)


@pytest.fixture
def label(request):
    """Makes labels unique to this test (and run), so tests never see each
    other's objects by label."""
    run = uuid.uuid4().hex[:8]
    name = request.node.name[:80]

    def make(kind: str = "obj") -> str:
        return f"{name}-{kind}-{run}"

    return make


# --------------------------------------------------------------------------
# reporting: a failed test shows the tail of its server's log


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.when == "call" and report.failed:
        server = getattr(item, "funcargs", {}).get("fm_server")
        if isinstance(server, FmServer):
            report.sections.append(
                (f"fleet-manager ({server.backend}) log tail", server.log_tail(40))
            )
    return report
