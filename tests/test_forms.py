"""Form validation mirrors LaunchDarkly's rules, with a message next to the field at fault."""

from __future__ import annotations

from typing import Any

import pytest

from segments_app.forms import DeleteSegmentForm, SegmentFilterForm, SegmentForm

VALID = {
    "name": "VIP customers",
    "key": "vip-customers",
    "description": "",
    "tags": "",
    "submission_token": "t1",
}


def form_with(**changes: Any) -> SegmentForm:
    data = {**VALID, **changes}
    return SegmentForm({k: v for k, v in data.items() if v is not None})


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"name": None}, "name", "This field is required."),
        ({"name": "   "}, "name", "This field is required."),
        ({"name": "x" * 257}, "name", "Ensure this value has at most 256 characters (it has 257)."),
        ({"key": None}, "key", "This field is required."),
        (
            {"key": "-vip"},
            "key",
            "Use only letters, digits, '.', '_' and '-', starting with a letter or digit.",
        ),
        (
            {"key": "_vip"},
            "key",
            "Use only letters, digits, '.', '_' and '-', starting with a letter or digit.",
        ),
        (
            {"key": ".vip"},
            "key",
            "Use only letters, digits, '.', '_' and '-', starting with a letter or digit.",
        ),
        (
            {"key": "vip customers"},
            "key",
            "Use only letters, digits, '.', '_' and '-', starting with a letter or digit.",
        ),
        (
            {"key": "vip/customers"},
            "key",
            "Use only letters, digits, '.', '_' and '-', starting with a letter or digit.",
        ),
        (
            {"key": "vïp"},
            "key",
            "Use only letters, digits, '.', '_' and '-', starting with a letter or digit.",
        ),
        (
            {"tags": "good, bad tag"},
            "tags",
            "These tags are not allowed: bad tag. A tag is 1–64 letters, digits, '.', '_' or '-'.",
        ),
        (
            {"tags": "a" * 65},
            "tags",
            f"These tags are not allowed: {'a' * 65}. A tag is 1–64 letters, digits, '.', '_' or '-'.",
        ),
        (
            {"tags": "ok,tag!"},
            "tags",
            "These tags are not allowed: tag!. A tag is 1–64 letters, digits, '.', '_' or '-'.",
        ),
        (
            {"unbounded": "on", "context_kind": ""},
            "context_kind",
            "A big segment needs a context kind, for example user.",
        ),
        (
            {"unbounded": "on", "context_kind": "my kind"},
            "context_kind",
            "Use only letters, digits, '.', '_' and '-' (and not 'kind' or 'multi').",
        ),
        (
            {"unbounded": "on", "context_kind": "kind"},
            "context_kind",
            "Use only letters, digits, '.', '_' and '-' (and not 'kind' or 'multi').",
        ),
        ({"submission_token": None}, "submission_token", "This field is required."),
    ],
)
def test_invalid_segment_forms(changes: dict, field: str, message: str) -> None:
    form = form_with(**changes)
    assert not form.is_valid()
    assert form.errors[field] == [message]
    assert set(form.errors) == {field}


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({}, {"key": "vip-customers", "tags": [], "unbounded": False, "context_kind": ""}),
        ({"key": "  A1._-x  "}, {"key": "A1._-x"}),
        ({"key": "0"}, {"key": "0"}),
        ({"tags": " beta, vip,beta ,, "}, {"tags": ["beta", "vip"]}),
        ({"tags": "a" * 64}, {"tags": ["a" * 64]}),
        ({"unbounded": "on", "context_kind": " device "}, {"unbounded": True, "context_kind": "device"}),
        ({"unbounded": "", "context_kind": "ignored"}, {"unbounded": False, "context_kind": ""}),
        ({"name": "  Padded  "}, {"name": "Padded"}),
    ],
)
def test_valid_segment_forms(changes: dict, expected: dict) -> None:
    form = form_with(**changes)
    assert form.is_valid(), form.errors
    for name, value in expected.items():
        assert form.cleaned_data[name] == value


def test_new_form_carries_a_fresh_submission_token_and_defaults_to_user() -> None:
    first, second = SegmentForm(), SegmentForm()
    assert first["submission_token"].value() != second["submission_token"].value()
    assert len(first["submission_token"].value()) == 32
    assert first["context_kind"].value() == "user"


@pytest.mark.parametrize(
    ("typed", "valid"),
    [("vip-customers", True), (" vip-customers ", True), ("VIP-customers", False), ("", False)],
)
def test_delete_form_needs_the_exact_key(typed: str, valid: bool) -> None:
    form = DeleteSegmentForm({"confirm_key": typed, "submission_token": "t"}, segment_key="vip-customers")
    assert form.is_valid() is valid
    if not valid and typed:
        assert form.errors["confirm_key"] == ['Type "vip-customers" exactly to confirm.']


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({}, {"query": "", "tag": "", "unbounded": None, "sort": "name", "page": 1}),
        (
            {"q": " vip ", "tag": "beta", "kind": "big", "sort": "-lastModified", "page": "3"},
            {"query": "vip", "tag": "beta", "unbounded": True, "sort": "-lastModified", "page": 3},
        ),
        ({"kind": "standard"}, {"unbounded": False}),
        # Nonsense falls back to the default for that parameter alone.
        (
            {"kind": "huge", "sort": "colour", "page": "-2", "q": "x"},
            {"unbounded": None, "sort": "name", "page": 1, "query": "x"},
        ),
        ({"page": "abc"}, {"page": 1}),
    ],
)
def test_filter_form_values(query: dict, expected: dict) -> None:
    values = SegmentFilterForm(query).values()
    for name, value in expected.items():
        assert values[name] == value
