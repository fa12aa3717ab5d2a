"""The pure parts of the export: masking, formula-safe text, the field catalogue, and the
CSV/Excel writers fed rows directly (including text no database stores, such as NUL)."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import openpyxl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ordercore import InvalidField
from ordercore._reports.cells import (
    FORMULA_STARTS,
    csv_text,
    is_dangerous,
    local_text,
    minor_text,
)
from ordercore._reports.fields import (
    ADJUSTMENT_FIELDS,
    DEFAULT_FIELDS,
    FIELDS,
    QUERY_COLUMNS,
    TIMES,
    TIMES_AT,
    OrderRecord,
    needs,
    resolve_fields,
    row_values,
)
from ordercore._reports.masking import (
    mask,
    mask_account,
    mask_email,
    mask_ip,
    mask_name,
    mask_phone,
)
from ordercore._reports.tabular import CsvSink, XlsxSink, csv_cell, csv_cells

UTC = timezone.utc


@pytest.mark.parametrize(
    ("fn", "original", "masked"),
    [
        (mask_name, "张三", "张*"),
        (mask_name, "欧阳娜娜", "欧***"),
        (mask_name, "Lin Lei", "L** Lei"),
        (mask_name, "Alice", "A****"),
        (mask_name, "X", "*"),
        (mask_email, "zhang@example.com", "z***@example.com"),
        (mask_email, "a@b.cn", "a***@b.cn"),
        (mask_phone, "13812345678", "138****5678"),
        (mask_phone, "+86 138 1234 5678", "+86 1** **** 5678"),
        (mask_phone, "5551234", "*****34"),
        (mask_ip, "203.0.113.7", "203.0.*.*"),
        (mask_ip, "2001:db8:85a3::8a2e:370:7334", "2001:db8:*"),
        (mask_account, "6222021234567890", "622*********7890"),
        (mask_account, "alipay@example.com", "a***@example.com"),
    ],
)
def test_masks(fn: object, original: str, masked: str) -> None:
    assert fn(original) == masked  # type: ignore[operator]


_TEXT = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="*"),
    min_size=1,
    max_size=30,
).filter(lambda s: s.strip() != "")


@given(_TEXT, st.sampled_from(["name", "email", "phone", "ip", "account"]))
def test_a_masked_value_never_contains_the_original(value: str, kind: str) -> None:
    masked = mask(kind, value)  # type: ignore[arg-type]
    assert masked is not None
    assert value.strip() not in masked


@given(st.from_regex(r"1[3-9]\d{9}", fullmatch=True))
def test_mobile_numbers_keep_three_and_four_digits(phone: str) -> None:
    masked = mask_phone(phone)
    assert masked[:3] == phone[:3]
    assert masked[-4:] == phone[-4:]
    assert masked[3:7] == "****"


def test_none_and_empty_stay() -> None:
    assert mask("name", None) is None
    assert mask("email", "") == ""


@pytest.mark.parametrize("start", sorted(FORMULA_STARTS))
def test_every_dangerous_start_is_escaped(start: str) -> None:
    text = start + "cmd|' /C calc'!A0"
    assert is_dangerous(text)
    assert csv_text(text) == "'" + text


@pytest.mark.parametrize("text", ["", "plain", "1+1", "a=b", "'quoted", " =spaced"])
def test_harmless_text_is_left_alone(text: str) -> None:
    assert csv_text(text) == text


def test_unknown_and_repeated_fields_are_refused_with_the_list() -> None:
    with pytest.raises(InvalidField) as exc:
        resolve_fields("number,colour")
    assert "'colour'" in str(exc.value)
    assert ", ".join(FIELDS) in str(exc.value)
    with pytest.raises(InvalidField, match="twice"):
        resolve_fields(["number", "number"])
    with pytest.raises(InvalidField, match="at least one"):
        resolve_fields([])
    assert [f.name for f in resolve_fields(None)] == list(DEFAULT_FIELDS)
    assert "products" in DEFAULT_FIELDS


def _record(name: str, note_like: str = "") -> OrderRecord:
    at = datetime(2026, 11, 24, 16, 0, 1, tzinfo=UTC)
    return OrderRecord(
        id=1,
        number="2026112400000001",
        status="paid",
        cancel_reason=None,
        currency="CNY",
        original_minor=3000,
        payable_minor=2990,
        paid_minor=2990,
        refunded_minor=0,
        adjustments='[{"kind": "coupon", "amount": 10, "label": "c", "per_line": [10]}]',
        channel="alipay",
        special=False,
        customer_id=7,
        customer_ref=None,
        customer_name=name,
        customer_email="zhang@example.com",
        customer_phone="13812345678",
        method="page",
        out_trade_no="T1",
        trade_no=None,
        created_at=at,
        paid_at=at,
        completed_at=None,
        canceled_at=None,
        refunded_at=None,
        minor_units=2,
        lines=[("VIP", note_like or "高级会员", 1)],
        tags=["vip"],
    )


HOSTILE = ["=1+1", "+1", "-1", "@SUM(A1)", "\tx", "\rx", "\nx", "\0x"]


def test_csv_and_excel_writers_on_hostile_text(tmp_path: Path) -> None:
    fields = resolve_fields("number,customer_name,products,payable,coupon,created_at,special")
    zone = ZoneInfo("Asia/Shanghai")
    buf = io.StringIO(newline="")
    sink = CsvSink(buf, fields, zone)
    xlsx = XlsxSink(str(tmp_path / "h.xlsx"), fields, zone, sheet_rows=4)
    for name in HOSTILE:
        values = row_values(fields, _record(name, name), masked=False)
        sink.write(values)
        xlsx.write(values)
    xlsx.close()
    assert xlsx.sheets == 3  # 3 + 3 + 2 rows
    rows = list(csv.reader(io.StringIO(buf.getvalue(), newline="")))
    assert rows[0] == [
        "number",
        "customer_name",
        "products",
        "payable",
        "coupon",
        "created_at",
        "special",
    ]
    for name, row in zip(HOSTILE, rows[1:], strict=True):
        assert row[1] == "'" + name
        assert row[2] == "'" + name + " ×1"
        assert row[3:] == ["29.90", "0.10", "2026-11-25T00:00:01+08:00", "false"]
    book = openpyxl.load_workbook(tmp_path / "h.xlsx")
    cells = [r for ws in book.worksheets for r in list(ws.iter_rows(min_row=2))]
    for name, row in zip(HOSTILE, cells, strict=True):
        assert row[1].data_type == "s"
        decoded = re.sub(r"_x([0-9A-F]{4})_", lambda m: chr(int(m[1], 16)), row[1].value)
        assert decoded == name
        assert Decimal(str(row[3].value)) == Decimal("29.90")
        assert row[3].number_format == "0.00"
        assert row[5].value == datetime(2026, 11, 25, 0, 0, 1)


def test_masking_applies_only_to_personal_fields() -> None:
    fields = resolve_fields("number,customer_name,customer_email,customer_phone,products")
    values = row_values(fields, _record("张三"), masked=True)
    assert values == ["2026112400000001", "张*", "z***@example.com", "138****5678", "高级会员 ×1"]


# ----------------------------------------------------------- the CSV writer's fast path
_ZONES = [ZoneInfo(z) for z in ("UTC", "Asia/Shanghai", "America/New_York", "Asia/Kolkata")]
_MAYBE_TEXT = st.none() | st.text(max_size=12) | st.sampled_from([*HOSTILE, "", " ", "张三"])
_TIME = st.datetimes(
    min_value=datetime(1900, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)


@st.composite
def _records(draw: st.DrawFn) -> OrderRecord:
    kinds = [k for k, _t, _d in ADJUSTMENT_FIELDS]
    adjustments = [
        {"kind": draw(st.sampled_from(kinds)), "amount": draw(st.integers(0, 10**9))}
        for _ in range(draw(st.integers(0, 3)))
    ]
    amount = st.integers(-(10**12), 10**12)
    return OrderRecord(
        id=draw(st.integers(1, 10**9)),
        number=draw(st.text(min_size=1, max_size=8)),
        status=draw(st.sampled_from(["paid", "=1", "canceled"])),
        cancel_reason=draw(_MAYBE_TEXT),
        currency=draw(st.sampled_from(["CNY", "JPY", "KWD"])),
        original_minor=draw(amount),
        payable_minor=draw(amount),
        paid_minor=draw(amount),
        refunded_minor=draw(amount),
        adjustments=json.dumps(adjustments),
        channel=draw(_MAYBE_TEXT),
        special=draw(st.sampled_from([True, False, 0, 1])),
        customer_id=draw(st.integers(1, 10**9)),
        customer_ref=draw(_MAYBE_TEXT),
        customer_name=draw(st.text(max_size=12) | st.sampled_from(HOSTILE)),
        customer_email=draw(_MAYBE_TEXT),
        customer_phone=draw(_MAYBE_TEXT),
        method=draw(_MAYBE_TEXT),
        out_trade_no=draw(_MAYBE_TEXT),
        trade_no=draw(_MAYBE_TEXT),
        created_at=draw(_TIME),
        paid_at=draw(st.none() | _TIME),
        completed_at=draw(st.none() | _TIME),
        canceled_at=draw(st.none() | _TIME),
        refunded_at=draw(st.none() | _TIME),
        minor_units=draw(st.sampled_from([0, 2, 3])),
        lines=draw(
            st.lists(st.tuples(st.text(max_size=5), _MAYBE_TEXT.map(str), st.integers(0, 99)))
        ),
        tags=draw(st.lists(st.text(max_size=5), max_size=3)),
        notes_count=draw(st.integers(0, 5)),
        payer_ip=draw(_MAYBE_TEXT | st.just("203.0.113.7")),
    )


@given(_records(), st.sampled_from(_ZONES), st.booleans())
def test_the_csv_fast_path_writes_what_the_catalogue_says(
    record: OrderRecord, zone: ZoneInfo, masked: bool
) -> None:
    """csv_cells (one generated expression a column) gives exactly csv_cell of row_values
    (the catalogue's getters, the masks, the formula rule), for every field."""
    fields = list(FIELDS.values())
    expected = [csv_cell(v, zone) for v in row_values(fields, record, masked=masked)]
    assert csv_cells(fields, zone, masked=masked)(record) == expected
    for field in fields:  # and one column alone
        assert csv_cells([field], zone, masked=masked)(record) == [
            csv_cell(row_values([field], record, masked=masked)[0], zone)
        ]


@given(st.integers(-(2**63), 2**63 - 1), st.integers(0, 8))  # a BigInteger column
def test_minor_text_is_the_decimal_text(minor: int, units: int) -> None:
    assert minor_text(minor, units) == format(Decimal(minor).scaleb(-units), "f")


@given(
    st.datetimes(
        min_value=datetime(1800, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)
    ),
    st.sampled_from([*_ZONES, ZoneInfo("Europe/Amsterdam"), ZoneInfo("Asia/Kathmandu")]),
)
def test_local_text_is_isoformat_to_the_second(moment: datetime, zone: ZoneInfo) -> None:
    # 1800 in Amsterdam: an offset with seconds (+00:19:32) comes out whole
    assert local_text(moment, zone) == moment.astimezone(zone).isoformat(timespec="seconds")


def test_the_query_columns_end_with_the_times() -> None:
    assert QUERY_COLUMNS[TIMES_AT:] == TIMES
    assert set(needs(list(FIELDS.values()))) >= {f.column for f in FIELDS.values() if f.column}
