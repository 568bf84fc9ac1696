"""The web console in a real headless Chromium (Debian's chromium and
chromedriver, driven by selenium) against the real binary on the local
cloud: an admin signs in, creates a network, a template with two setup
actions and an instance, provisions it while the page follows the progress
without a reload, opens the node through its URL, stops, starts, snapshots,
restores from the snapshot, backs up and deletes it, and finds each step in
the audit log under their name; a viewer finds no action button and a
forged POST of theirs is refused (403) and audited. Screenshots of the main
pages are kept under tests/python/.artifacts/console/."""

import os
import shutil
import time
import uuid
from pathlib import Path

import pytest
import requests

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.common.exceptions import StaleElementReferenceException  # noqa: E402
from selenium.webdriver.chrome.options import Options  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

ARTIFACTS = Path(__file__).resolve().parent / ".artifacts" / "console"
CHROMIUM = os.environ.get("FM_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("FM_CHROMEDRIVER", "/usr/bin/chromedriver")
STATE_TIMEOUT_S = 180


@pytest.fixture(scope="module")
def browser():
    for path in (CHROMIUM, CHROMEDRIVER):
        if not os.access(path, os.X_OK):
            pytest.fail(f"{path} is missing: run scripts/ensure-chromium.sh")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    opts = Options()
    opts.binary_location = CHROMIUM
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--window-size=1280,800", "--no-first-run", "--disable-extensions"):
        opts.add_argument(a)
    # The driver is Debian's: selenium must not look for (or fetch) one.
    os.environ["SE_OFFLINE"] = "true"
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


class Page:
    """The browser on one FM: navigation, forms, waits."""

    def __init__(self, driver, base):
        self.d = driver
        self.base = base

    def open(self, path):
        self.d.get(self.base + path)

    def find(self, css):
        return self.d.find_element(By.CSS_SELECTOR, css)

    def all(self, css):
        return self.d.find_elements(By.CSS_SELECTOR, css)

    def fill(self, fields: dict):
        for name, value in fields.items():
            el = self.find(f"[name='{name}']")
            if el.tag_name == "select":
                sel = Select(el)
                matches = [o for o in sel.options if value in o.text or o.get_attribute("value") == value]
                assert matches, f"no option like {value!r} in {name}"
                sel.select_by_value(matches[0].get_attribute("value"))
            else:
                el.clear()
                el.send_keys(value)

    def submit(self, css="button[type=submit].primary"):
        self.find(css).click()

    def wait(self, cond, timeout=30, what="the page"):
        def check(_):
            try:
                return cond()
            except StaleElementReferenceException:
                return False
        return WebDriverWait(self.d, timeout, poll_frequency=0.2).until(check, f"waiting for {what}")

    def wait_path(self, prefix, timeout=60):
        self.wait(lambda: self.d.current_url.split("?")[0].startswith(self.base + prefix),
                  timeout, f"a page under {prefix} (at {self.d.current_url})")

    def text(self, css):
        els = self.all(css)
        return els[0].text.strip() if els else ""

    def shot(self, name):
        self.d.save_screenshot(str(ARTIFACTS / f"{name}.png"))

    def sign_in(self, name, password):
        self.d.delete_all_cookies()
        self.open("/console/")
        self.wait_path("/console/login")
        self.fill({"name": name, "password": password})
        self.submit()

    def set_password(self, current, new):
        self.wait_path("/console/account/password")
        self.fill({"current": current, "password": new, "confirm": new})
        self.submit()
        self.wait(lambda: self.all("#password-done"), what="the password change")

    def state(self):
        return self.text("#instance-state")

    def act(self, verb, **fields):
        """Clicks an action of the instance page and confirms it."""
        self.find(f"a[data-action='{verb}']").click()
        self.wait(lambda: self.all("#confirm"), what=f"the confirmation of {verb}")
        assert self.text("#consequence"), "the confirmation says what happens"
        if fields:
            self.fill(fields)
        self.find("#confirm").click()
        self.wait(lambda: self.all("#instance-state") or self.all("#instances"), what=f"after {verb}")

    def wait_state(self, want, timeout=STATE_TIMEOUT_S):
        self.wait(lambda: self.state() == want and not self.all("#active-operation"),
                  timeout, f"instance state {want} (now {self.state()!r})")


def new_user(fm_server, role):
    name = f"{role}-{uuid.uuid4().hex[:6]}"
    first = fm_server.admin("create-user", name, "--role", role)["password"]
    own = f"own-{uuid.uuid4().hex}"
    fm_server.secrets.append(own)
    return name, first, own


def test_an_admin_runs_an_instance_through_its_life_in_the_console(fm_server, browser, label):
    p = Page(browser, fm_server.base_url)
    name, first, own = new_user(fm_server, "admin")
    p.sign_in(name, first)
    p.set_password(first, own)

    p.open("/console/networks/new")
    net = label("net")
    p.fill({"label": net})
    p.submit()
    p.wait(lambda: net in p.text("#networks"), what="the new network in the list")

    p.open("/console/templates/new")
    tpl = label("tpl")
    p.fill({
        "label": tpl,
        "action_type_0": "ADD_AUTHORIZED_KEY",
        "action_params_0": '{"sshKey": "ssh-ed25519 AAAAC3NzaConsole console@fm"}',
        "action_type_1": "ADD_ENV_VARIABLES",
        "action_params_1": '{"variables": [{"key": "CONSOLE_VAR", "value": "from-the-console"}]}',
    })
    p.submit()
    p.wait(lambda: tpl in p.text("#templates"), what="the new template in the list")
    assert "ADD_AUTHORIZED_KEY, ADD_ENV_VARIABLES" in p.text("#templates")

    p.open("/console/instances/new")
    inst_label = label("node")
    p.fill({"label": inst_label, "instanceSettingsTemplateId": tpl, "virtualNetworkId": net})
    p.submit()
    p.wait_path("/console/instances/inst-")
    inst = browser.current_url.rstrip("/").split("/")[-1]
    assert p.state() == "none"
    p.shot("instance-new")

    # Provision, and follow it on the page: no reload (the marker stays).
    p.act("reprovision")
    browser.execute_script("window.__fmMarker = 'kept';")
    seen = set()

    def running():
        seen.add(p.state())
        if p.all("#active-operation"):
            seen.add("operation shown")
        return p.state() == "running" and not p.all("#active-operation")

    p.wait(running, STATE_TIMEOUT_S, "the node to run")
    assert browser.execute_script("return window.__fmMarker") == "kept", "the page was reloaded"
    assert "operation shown" in seen or "provisioning" in seen, seen
    p.shot("instance-running")

    # The node itself, through its URL.
    url = p.find("#public-url").get_attribute("href")
    assert requests.get(url, timeout=10).status_code < 500
    browser.get(url)
    assert browser.current_url.startswith(url.rstrip("/"))
    browser.back()
    p.wait(lambda: p.state() == "running", what="the instance page again")
    # The agent's own recent lines, shipped by it when the page asks.
    p.wait(
        lambda: "session with FM open" in p.text("#agent-log"),
        what="the agent's log lines",
    )

    p.act("stop")
    p.wait_state("stopped")
    p.act("start")
    p.wait_state("running")

    p.act("snapshot", reason="before the restore")
    p.wait(lambda: p.all("#snapshots tbody tr"), what="the snapshot in its table")
    p.find("#snapshots a.button").click()
    p.wait(lambda: p.all("#confirm"), what="the restore's confirmation")
    assert "snapshot" in p.text("#consequence")
    p.find("#confirm").click()
    p.wait_path(f"/console/instances/{inst}")
    p.wait_state("running")

    p.act("backup", reason="from the console")

    def backed_up():
        if p.all("#active-operation"):
            return False
        p.d.refresh()
        return bool(p.all("#backups tbody tr"))

    p.wait(backed_up, STATE_TIMEOUT_S, "the backup in its table")

    p.open("/console/")
    p.shot("dashboard")
    p.open("/console/operations")
    p.shot("operations")
    p.open(f"/console/instances/{inst}")
    p.act("delete")
    p.wait_path("/console/instances")

    def gone():
        p.open("/console/instances")
        return inst not in p.text("#instances")

    p.wait(gone, STATE_TIMEOUT_S, "the instance to be deleted")
    p.shot("instances")

    p.open(f"/console/audit?window=1h&actor={name}")
    p.shot("audit")
    rows = [r.text for r in p.all("#audit tbody tr")]
    for step in ("/console/networks", "/console/templates", "/console/instances",
                 "actions/reprovision", "actions/stop", "actions/start", "actions/snapshot",
                 "actions/restore-snapshot", "actions/backup", "actions/delete"):
        assert any(step in r and name in r and " ok" in r for r in rows), f"{step} not audited as {name}"


def test_a_viewer_finds_no_action_button_and_a_forged_post_is_refused_and_audited(
        fm_server, browser, client, label):
    from test_fmclient import an_image_id, new_instance, new_network, new_template

    vn = new_network(client, label("vn"))
    tmpl = new_template(client, label("tmpl"))
    inst = new_instance(client, label("inst"), tmpl.id, vn.id, an_image_id(client))

    p = Page(browser, fm_server.base_url)
    name, first, own = new_user(fm_server, "viewer")
    p.sign_in(name, first)
    p.set_password(first, own)
    p.open(f"/console/instances/{inst.id}")
    p.wait(lambda: p.all("#instance-state"), what="the instance page")
    assert p.all("[data-action]") == [], "a viewer sees no action button"
    assert p.all("a[href='/console/instances/new']") == []
    assert "Audit log" not in p.text("header")
    p.shot("viewer-instance")
    p.open("/console/audit")
    assert "Not found" in p.text("h1")

    # A POST forged from the viewer's own session: refused, audited.
    p.open(f"/console/instances/{inst.id}")
    status = browser.execute_async_script(
        """
        const done = arguments[arguments.length - 1];
        const csrf = document.querySelector("input[name=csrf]").value;
        fetch(arguments[0], {method: "POST",
            headers: {"Content-Type": "application/x-www-form-urlencoded"},
            body: "csrf=" + encodeURIComponent(csrf)})
          .then(r => done(r.status), e => done(String(e)));
        """,
        f"/console/instances/{inst.id}/actions/stop",
    )
    assert status == 403
    rows = fm_server.audit_log()
    path = f"/console/instances/{inst.id}/actions/stop"
    refused = [r for r in rows if r["path"] == path]
    assert refused and refused[-1]["outcome"] == "refused", refused
    assert refused[-1]["actor"] == name and refused[-1]["status"] == 403


def test_the_console_is_usable_on_a_phone_width_window_and_by_keyboard(fm_server, browser):
    p = Page(browser, fm_server.base_url)
    name, first, own = new_user(fm_server, "operator")
    browser.set_window_size(390, 844)
    try:
        p.sign_in(name, first)
        p.set_password(first, own)
        p.open("/console/instances")
        width = browser.execute_script("return document.documentElement.scrollWidth")
        assert width <= 400, f"the page is {width} px wide on a 390 px window"
        p.shot("instances-phone")
        # Every input has a label.
        unlabeled = browser.execute_script(
            """
            return [...document.querySelectorAll("input:not([type=hidden]), select, textarea")]
              .filter(e => !(e.labels && e.labels.length) && !e.getAttribute("aria-label"))
              .map(e => e.name);
            """)
        assert unlabeled == [], unlabeled
        # The first tab stop is the skip link, then the menu.
        browser.find_element(By.TAG_NAME, "body").send_keys("\ue004")
        focused = browser.execute_script("return document.activeElement.textContent")
        assert "Skip to content" in focused, focused
    finally:
        browser.set_window_size(1280, 800)


def teardown_module(_module):
    # Keep the screenshots; nothing else.
    if ARTIFACTS.exists() and not any(ARTIFACTS.iterdir()):
        shutil.rmtree(ARTIFACTS, ignore_errors=True)
