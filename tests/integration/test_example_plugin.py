"""The example channel plugin of docs/plugins.md, as a plugin author ships it.

docs/examples/plugin/ is built and installed with pip (its own ``[build-system]``, no network,
no build isolation) into a throwaway virtual environment that sees this environment's packages
(ordercore, setuptools, pytest) but not the plugin's checkout. In that environment:

* the plugin's own test file passes against the installed package;
* a fresh process finds the channel through the ``ordercore`` entry point only (never imported
  by name), creates an order on SQLite, and pays it by POSTing an HMAC-signed notification
  over loopback HTTP to ordercore's callback endpoint; a tampered notification is refused,
  recorded, and pays nothing.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import site
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PLUGIN = ROOT / "docs" / "examples" / "plugin"
PLUGINS_DOC = ROOT / "docs" / "plugins.md"

# The host side, run by the throwaway environment's interpreter.
SHOP = r"""
import json
import sys
import urllib.error
import urllib.request

from ordercore import Actor, Money, OrderCore
from ordercore.web import start_background_server

assert "ordercore_examplepay" not in sys.modules
core = OrderCore.from_url(
    sys.argv[1],
    channels={
        "examplepay": {"account": "acct_1", "webhook_secret_env": "EXAMPLEPAY_WEBHOOK_SECRET"}
    },
)
core.upgrade()
channel = core.channel("examplepay")
module = sys.modules[type(channel).__module__]  # loaded by the plugin manager
admin = Actor.operator("alice", role="admin")
customer = core.customers.add(name="Li Lei", email="lilei@example.com", actor=admin)
core.products.add(sku="VPN-30D", name="VPN, 30 days", price=Money.of("30.00", "USD"), actor=admin)


def new_attempt():
    order = core.orders.create(customer_id=customer.id, items=[("VPN-30D", 1)], actor=admin)
    started = core.payments.start(order.number, channel="examplepay", method="page", actor=admin)
    return order.number, started


def post(url, body, signature):
    request = urllib.request.Request(
        url, data=body, method="POST", headers={"X-ExamplePay-Signature": signature}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read().decode()


def notification(out_trade_no, event_id, amount="30.00"):
    payload = {
        "id": event_id,
        "account": "acct_1",
        "reference": out_trade_no,
        "status": "paid",
        "amount": amount,
        "currency": "USD",
    }
    return json.dumps(payload).encode()


secret = b"whsec-example"
server, url = start_background_server(core)
try:
    endpoint = f"{url}/callbacks/examplepay"
    paid_number, paid = new_attempt()
    body = notification(paid.attempt.out_trade_no, "ev_1")
    answer = post(endpoint, body, module.sign(secret, body))
    again = post(endpoint, body, module.sign(secret, body))  # a duplicate delivery

    kept_number, kept = new_attempt()
    signed = notification(kept.attempt.out_trade_no, "ev_2")
    tampered = signed.replace(b'"30.00"', b'"0.01"')
    refused = post(endpoint, tampered, module.sign(secret, signed))
    forged = post(endpoint, signed, module.sign(b"not the secret", signed))
finally:
    server.shutdown()
    server.server_close()

paid_order = core.orders.get(paid_number)
print(json.dumps({
    "module": module.__name__,
    "module_file": module.__file__,
    "class": type(channel).__qualname__,
    "checkout": [paid.checkout.kind, paid.checkout.url],
    "answer": answer,
    "again": again,
    "paid_status": paid_order.status.value,
    "paid_amount": str(paid_order.amounts.paid),
    "refused": refused,
    "forged": forged,
    "kept_status": core.orders.get(kept_number).status.value,
    "kept_amount": str(core.orders.get(kept_number).amounts.paid),
    "rejected": sorted(
        str(entry["reason"]) for entry in core.payments.notifications(status="rejected")
    ),
}))
core.close()
"""


@dataclass
class Installed:
    python: Path
    venv: Path
    tests: Path
    env: dict[str, str]


def _run(args: list[str | Path], *, env: dict[str, str], cwd: Path, timeout: float = 120) -> str:
    done = subprocess.run(
        [str(a) for a in args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, f"{args}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def _install(work: Path) -> Installed:
    """A virtual environment in ``work`` with the example plugin installed by pip."""
    source = work / "ordercore-examplepay"
    shutil.copytree(
        PLUGIN, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__")
    )
    venv = work / "venv"
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120
    )
    python = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    purelib = _run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        env={},
        cwd=work,
    ).strip()
    # Like --system-site-packages, but for the environment running this test (a venv itself):
    # ordercore, its dependencies, setuptools, pip and pytest, installed or editable.
    ours = [p for p in [*site.getsitepackages(), site.getusersitepackages()] if Path(p).is_dir()]
    (Path(purelib) / "_outer_environment.pth").write_text(
        "".join(f"import site; site.addsitedir({p!r})\n" for p in ours), encoding="utf-8"
    )
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(work),
        "PIP_NO_INDEX": "1",  # nothing from the network: everything needed is installed
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    _run(
        [python, "-m", "pip", "install", "-q", "--no-build-isolation", source],
        env=env,
        cwd=work,
        timeout=300,
    )
    # The checkout goes away: from now on only the installed package can be imported.
    shutil.rmtree(source / "src")
    return Installed(python, venv, source / "tests", env)


METADATA = """
import json
from importlib.metadata import distribution, entry_points

dist = distribution("ordercore-examplepay")
print(json.dumps({
    "files": sorted(str(f) for f in dist.files),
    "where": str(dist.locate_file("")),
    "entry_points": sorted(f"{e.name} = {e.value}" for e in entry_points(group="ordercore")),
}))
"""


def _check_the_installation(installed: Installed) -> None:
    out = json.loads(
        _run([installed.python, "-c", METADATA], env=installed.env, cwd=installed.venv)
    )
    assert Path(out["where"]).resolve().is_relative_to(installed.venv.resolve())
    assert {"ordercore_examplepay/__init__.py", "ordercore_examplepay/py.typed"} <= set(
        out["files"]
    )
    # ordercore's own plugins are found the same way, from the outer environment.
    assert {"examplepay = ordercore_examplepay", "alipay = ordercore_alipay"} <= set(
        out["entry_points"]
    )


def _check_the_plugins_own_tests(installed: Installed) -> None:
    out = _run(
        [installed.python, "-m", "pytest", "-q", "-p", "no:cacheprovider", installed.tests],
        env=installed.env,
        cwd=installed.tests.parent,
    )
    assert re.search(r"\b6 passed\b", out), out


def _check_a_payment_over_http(installed: Installed, tmp_path: Path) -> None:
    env = {**installed.env, "EXAMPLEPAY_WEBHOOK_SECRET": "whsec-example"}
    script = tmp_path / "shop.py"
    script.write_text(SHOP, encoding="utf-8")
    url = f"sqlite:///{tmp_path / 'shop.db'}"
    out = json.loads(_run([installed.python, script, url], env=env, cwd=tmp_path).splitlines()[-1])

    assert out["module"] == "ordercore_examplepay"
    assert Path(out["module_file"]).resolve().is_relative_to(installed.venv.resolve())
    assert out["class"] == "ExamplePayChannel"
    kind, checkout_url = out["checkout"]
    assert kind == "redirect"
    assert checkout_url.startswith("https://pay.example.com/checkout?account=acct_1&reference=")
    # Paid once, whatever the number of deliveries.
    assert out["answer"] == [200, ""]
    assert out["again"] == [200, ""]
    assert (out["paid_status"], out["paid_amount"]) == ("paid", "30.00 USD")
    # A body changed after signing, and a body signed with another key: refused, recorded,
    # nothing paid.
    assert out["refused"] == [400, "the signature does not match"]
    assert out["forged"] == [400, "the signature does not match"]
    assert (out["kept_status"], out["kept_amount"]) == ("pending", "0.00 USD")
    assert out["rejected"] == ["bad_signature: the signature does not match"] * 2


def test_the_example_plugin_installs_passes_its_tests_and_takes_a_payment(
    tmp_path: Path,
) -> None:
    """One test, so that the environment is built once, whichever xdist worker runs it."""
    installed = _install(tmp_path / "example-plugin")
    _check_the_installation(installed)
    _check_the_plugins_own_tests(installed)
    shop = tmp_path / "shop"
    shop.mkdir()
    _check_a_payment_over_http(installed, shop)


def test_docs_plugins_shows_the_shipped_files() -> None:
    """docs/plugins.md includes every file of the example (pymdownx.snippets), and nothing
    that does not exist."""
    text = PLUGINS_DOC.read_text(encoding="utf-8")
    included = set(re.findall(r'^\s*--8<-- "(docs/examples/plugin/[^"]+)"$', text, re.MULTILINE))
    shipped = {
        p.relative_to(ROOT).as_posix()
        for p in PLUGIN.rglob("*")
        if p.is_file() and p.suffix in {".py", ".toml"} and "__pycache__" not in p.parts
    }
    assert shipped
    assert included == shipped
