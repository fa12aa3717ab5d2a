"""``ordercore export``, ``import backup`` and ``report`` as a user runs them.

The PDFs are checked the way a reader sees them: ``pdftotext`` must give back the Chinese
product names (the font has their glyphs and maps them to Unicode), and a page rasterised by
``pdftoppm`` must have ink where the names are. Under CI (``CI=true``) a missing font or
poppler is a failure, never a skip: ``.ci/run`` installs ``fonts-wqy-microhei`` and
``poppler-utils``.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
import zipfile
from pathlib import Path

import openpyxl
import pytest
from tests.helpers import ci_requires_databases

from ordercore._reports.pdf import find_font

from .conftest import OC

CHINESE = "高级会员一个月"


def _need_pdf_tools() -> None:
    missing = [t for t in ("pdftotext", "pdftoppm") if shutil.which(t) is None]
    if find_font(None) is None:
        missing.append("a CJK font (fonts-wqy-microhei)")
    if missing:
        message = f"missing {', '.join(missing)}: apt-get install fonts-wqy-microhei poppler-utils"
        if ci_requires_databases():
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture
def shop(oc: OC) -> OC:
    oc.ok(
        "products",
        "add",
        "--sku",
        "VIP-1M",
        "--name",
        CHINESE,
        "--price",
        "30",
        "--currency",
        "CNY",
        "--stock",
        "3",
        "--low-stock",
        "5",
    )
    oc.ok(
        "products",
        "add",
        "--sku",
        "VPN-1Y",
        "--name",
        "VPN, 12 months",
        "--price",
        "288",
        "--currency",
        "CNY",
    )
    oc.ok(
        "customers",
        "add",
        "--name",
        "张三",
        "--email",
        "zhang@example.com",
        "--phone",
        "13812345678",
    )
    oc.ok("customers", "add", "--name", '=HYPERLINK("http://x")', "--email", "h@example.com")
    for customer, item in (("1", "VIP-1M:2"), ("2", "VPN-1Y:1"), ("1", "VPN-1Y:1")):
        oc.ok("orders", "create", "--customer", customer, "--item", item)
    return oc


def _numbers(oc: OC) -> list[str]:
    return [o["number"] for o in oc.json("orders", "list", "--limit", "100")["items"]]


def test_csv_to_stdout_is_the_list_masked_and_formula_safe(shop: OC) -> None:
    out = shop.ok(
        "export",
        "orders",
        "--output",
        "-",
        "--fields",
        "number,customer_name,customer_email,customer_phone,products,payable",
    )
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [r["number"] for r in rows] == _numbers(shop)
    names = {r["customer_name"] for r in rows}
    hostile = '=HYPERLINK("http://x")'
    assert names == {"张*", "'=" + "*" * (len(hostile) - 1)}
    assert all("zhang@" not in r["customer_email"] for r in rows)
    assert {r["customer_phone"] for r in rows} == {"138****5678", ""}
    assert any(r["products"] == f"{CHINESE} ×2" for r in rows)
    assert {r["payable"] for r in rows} == {"60.00", "288.00"}
    product = shop.ok("export", "orders", "-o", "-", "--product", "VIP-1M", "--fields", "number")
    assert len(product.splitlines()) == 2  # the header and the one order with VIP-1M


def test_refusals_are_one_sentence_and_write_nothing(shop: OC, tmp_path: Path) -> None:
    sentence = shop.fail("export", "orders", "-o", "x.csv", "--fields", "number,secret")
    assert "valid fields: number, status" in sentence
    sentence = shop.fail(
        "export", "orders", "-o", "x.csv", "--no-mask", "--actor", "operator:fay:finance"
    )
    assert "orders.export_unmasked" in sentence
    shop.fail("export", "orders", "-o", "-", "--format", "xlsx")
    shop.fail("export", "orders", "-o", "x.csv", "--tz", "Nowhere/City")
    assert not [p for p in tmp_path.iterdir() if p.suffix in (".csv", ".partial")]


def test_excel_export_and_unmasked_audit(shop: OC, tmp_path: Path) -> None:
    view = shop.json("export", "orders", "--format", "xlsx", "-o", "o.xlsx", "--no-mask")
    assert view["rows"] == 3
    assert view["masked"] is False
    ws = openpyxl.load_workbook(tmp_path / "o.xlsx").active
    assert ws is not None
    names = [row[3].value for row in ws.iter_rows(min_row=2)]
    assert '=HYPERLINK("http://x")' in names
    cell = next(row[3] for row in ws.iter_rows(min_row=2) if str(row[3].value).startswith("="))
    assert cell.data_type == "s"  # a string, not a formula
    shop.ok("audit", "seal")  # the export's record is written pending, then sealed
    entries = shop.sql("SELECT action, after FROM audit_log WHERE action = 'export.orders'")
    assert len(entries) == 1
    assert json.loads(entries[0][1])["masked"] is False


def _pdf_checks(pdf: Path, tmp_path: Path, expected: list[str]) -> None:
    text = subprocess.run(
        ["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True, check=True
    ).stdout
    for word in expected:
        assert word in text, f"{word!r} not in the PDF's text"
    subprocess.run(
        ["pdftoppm", "-r", "40", "-gray", "-f", "1", "-l", "1", str(pdf), str(tmp_path / "page")],
        check=True,
        capture_output=True,
    )
    page = next(tmp_path.glob("page*.pgm")).read_bytes()
    # a PGM: header then one byte a pixel; a rendered page has dark pixels (text, lines)
    header_end = page.index(b"255\n") + 4
    pixels = page[header_end:]
    assert sum(1 for b in pixels if b < 128) > 200


def test_pdf_listing_renders_chinese(shop: OC, tmp_path: Path) -> None:
    _need_pdf_tools()
    shop.ok(
        "export",
        "orders",
        "--format",
        "pdf",
        "-o",
        "orders.pdf",
        "--fields",
        "number,customer_name,products,payable",
    )
    _pdf_checks(tmp_path / "orders.pdf", tmp_path, [CHINESE, "张*", "60.00"])


def test_sales_report_pdf_html_xlsx(shop: OC, tmp_path: Path) -> None:
    _need_pdf_tools()
    shop.ok("report", "--period", "this-month", "--format", "pdf", "-o", "report.pdf")
    _pdf_checks(tmp_path / "report.pdf", tmp_path, ["Sales report", "Low stock", CHINESE])
    shop.ok("report", "--period", "this-month", "--format", "html", "-o", "report.html")
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>")
    assert "<svg" in page
    assert CHINESE in page
    for remote in ("http://", "https://", "<script", "<link"):
        assert remote not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    shop.ok("report", "--period", "this-month", "--format", "xlsx", "-o", "report.xlsx")
    book = openpyxl.load_workbook(tmp_path / "report.xlsx")
    assert book.sheetnames == ["Summary", "Trend", "Channels", "Products", "Low stock"]
    low = [[c.value for c in r] for r in book["Low stock"].iter_rows(min_row=2)]
    assert low == [["VIP-1M", CHINESE, 1, 5]]  # 3 in stock, 2 reserved by the order
    sentence = shop.fail("report", "-o", "r.pdf", "--actor", "operator:sam:support")
    assert "may not" in sentence


def test_backup_and_import_through_the_cli(shop: OC, tmp_path: Path) -> None:
    shop.ok("export", "backup", "-o", "shop.zip")
    with zipfile.ZipFile(tmp_path / "shop.zip") as zf:
        manifest = json.loads(zf.read("manifest.json"))
    assert manifest["format"] == "ordercore-backup"
    assert manifest["version"] == 1
    target = OC(tmp_path / "restored.db")
    target.ok("db", "upgrade")
    view = target.json("import", "backup", "shop.zip")
    assert view["tables"]["orders"] == 3
    assert "intact" in target.ok("audit", "verify")
    assert _numbers(target) == _numbers(shop)
    assert target.fail("import", "backup", "shop.zip").startswith("a backup is restored")
