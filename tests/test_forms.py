"""Form validation mirrors LaunchDarkly's rules, with a message next to the field at fault."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from segments_app.forms import (
    DESCRIPTION_MAX_LENGTH,
    PREVIEW_RUNNING,
    DeleteSegmentForm,
    ImportForm,
    SegmentFilterForm,
    SegmentForm,
    SendDraftForm,
)
from segments_app.imports.preview import ModeImpact, Preview

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


# --- hostile form input (issue 8): over-long values, look-alike characters, values no form sends ---------

PATTERN = "Use only letters, digits, '.', '_' and '-', starting with a letter or digit."


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"key": "k" * 257}, "key", "Ensure this value has at most 256 characters (it has 257)."),
        (
            {"description": "d" * (DESCRIPTION_MAX_LENGTH + 1)},
            "description",
            f"Ensure this value has at most {DESCRIPTION_MAX_LENGTH} characters (it has 4097).",
        ),
        ({"tags": "t," * 513}, "tags", "Ensure this value has at most 1024 characters (it has 1026)."),
        (
            {"unbounded": "on", "context_kind": "c" * 65},
            "context_kind",
            "Ensure this value has at most 64 characters (it has 65).",
        ),
        ({"key": "vip-\u0441ustomers"}, "key", PATTERN),  # Cyrillic es
        ({"key": "\u0430dmin"}, "key", PATTERN),  # Cyrillic a
        ({"key": "\uff56\uff49\uff50"}, "key", PATTERN),  # fullwidth vip
        ({"key": "vip\u200bcustomers"}, "key", PATTERN),  # zero-width space
        ({"key": "\u0661\u0662"}, "key", PATTERN),  # Arabic-Indic digits
        ({"key": "<script>"}, "key", PATTERN),
        (
            {"tags": "b\u0435ta"},  # Cyrillic ie
            "tags",
            "These tags are not allowed: b\u0435ta. A tag is 1–64 letters, digits, '.', '_' or '-'.",
        ),
        (
            {"unbounded": "on", "context_kind": "us\u0435r"},
            "context_kind",
            "Use only letters, digits, '.', '_' and '-' (and not 'kind' or 'multi').",
        ),
        ({"unbounded": "maybe"}, "unbounded", "Tick the box or leave it empty; “maybe” is neither."),
    ],
    ids=[
        "key too long", "description too long", "tags too long", "context kind too long", "cyrillic es",
        "cyrillic a", "fullwidth", "zero-width space", "arabic digits", "html key", "cyrillic tag",
        "cyrillic context kind", "unbounded maybe",
    ],
)  # fmt: skip
def test_hostile_segment_forms_are_form_errors(changes: dict, field: str, message: str) -> None:
    """Each is refused next to its field, before LaunchDarkly or the database sees it."""
    form = form_with(**changes)
    assert not form.is_valid()
    assert form.errors[field] == [message]
    assert set(form.errors) == {field}


def test_html_in_a_name_and_description_is_accepted_as_text() -> None:
    """Names and descriptions are free text: markup in them is kept as typed, and escaped where shown
    (tests/test_hostile_uploads.py proves the escaping on every page)."""
    form = form_with(name="<script>alert(1)</script>", description="<b>bold</b>")
    assert form.is_valid(), form.errors
    assert form.cleaned_data["name"] == "<script>alert(1)</script>"


def import_form(**changes: Any) -> ImportForm:
    data = {"mode": "merge", "submission_token": "t" * 32, "action": "upload", **changes}
    files = {"file": SimpleUploadedFile("keys.csv", b"user-1\n")}
    return ImportForm({k: v for k, v in data.items() if v is not None}, files, segment_key="vip")


@pytest.mark.parametrize(
    ("value", "expected"), [(None, False), ("", False), ("on", True)], ids=["absent", "empty", "on"]
)
@pytest.mark.parametrize("name", ["wait_on_approvals", "has_header"])
def test_tick_boxes_take_what_a_browser_sends(name: str, value: str | None, expected: bool) -> None:
    form = import_form(**{name: value})
    assert form.is_valid(), form.errors
    assert form.cleaned_data[name] is expected


@pytest.mark.parametrize("value", ["maybe", "yes", "true", "True", "1", "off", "false", "0"])
@pytest.mark.parametrize("name", ["wait_on_approvals", "has_header"])
def test_tick_boxes_refuse_anything_else(name: str, value: str) -> None:
    """ "maybe" must not be read as yes, nor "false" or "off" (which no browser sends) as anything."""
    form = import_form(**{name: value})
    assert not form.is_valid()
    assert form.errors[name] == [f"Tick the box or leave it empty; “{value}” is neither."]


def test_a_draft_send_form_refuses_maybe_too() -> None:
    form = SendDraftForm(
        {"mode": "merge", "wait_on_approvals": "maybe"}, segment_key="vip", asks_about_header=False
    )
    assert not form.is_valid()
    assert form.errors == {"wait_on_approvals": ["Tick the box or leave it empty; “maybe” is neither."]}


@pytest.mark.parametrize(
    ("changes", "errors"),
    [
        ({"mode": "delete-everything"}, {"mode": ["Choose Merge, Replace or Remove."]}),
        ({"mode": None}, {"mode": ["Choose Merge, Replace or Remove."]}),
        ({"action": "send-now"}, {"__all__": ["Choose “Check file” or “Check and send”."]}),
    ],
    ids=["unknown mode", "no mode", "unknown action"],
)
def test_import_form_refuses_values_outside_its_choices(changes: dict, errors: dict) -> None:
    form = import_form(**changes)
    assert not form.is_valid()
    assert form.errors == errors


@pytest.mark.parametrize("action", [None, "upload", "check"])
def test_the_form_s_own_actions_are_accepted(action: str | None) -> None:
    assert import_form(action=action).is_valid()


# --- the confirmation of modes that take members out ----------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "action", "sends"),
    [
        ("merge", "upload", True),
        ("merge", None, True),  # no button named: the form's default, "Check and send"
        ("merge", "check", False),
        ("replace", "upload", False),
        ("replace", None, False),
        ("replace", "check", False),
        ("remove", "upload", False),
        ("remove", "check", False),
    ],
)
def test_the_upload_form_sends_only_a_merge(mode: str, action: str | None, sends: bool) -> None:
    """A replace or a remove is always kept as a draft, whatever the button: it is sent from its
    preview. Nothing is asked for it on the upload form (no typed key)."""
    form = import_form(mode=mode, action=action)
    assert form.is_valid(), form.errors
    assert form.cleaned_data["send"] is sends


def test_no_form_asks_for_the_segment_key() -> None:
    assert "confirm_key" not in ImportForm(segment_key="vip").fields
    typed = import_form(mode="replace", confirm_key="nope")  # a stale page's key is not looked at
    assert typed.is_valid(), typed.errors
    assert "confirm_key" not in typed.cleaned_data
    assert "confirm_key" not in send_form({}, replace=3, remove=2).fields


def impact(replace: int, remove: int, *, snapshot_id: int = 7, **changes: Any) -> Preview:
    """A ready preview whose replace removes `replace` members and whose remove takes out `remove`."""
    modes = [
        ModeImpact("merge", "Merge", 1, None, remove, 10),
        ModeImpact("replace", "Replace", 1, replace, remove, 1 + remove),
        ModeImpact("remove", "Remove", 0, remove, 9, 9, 1),
    ]
    fields: dict[str, Any] = {"members": 9, "modes": modes, "snapshot_id": snapshot_id, **changes}
    return Preview("ready", **fields)


def send_form(data: dict[str, Any], shown: Preview | None = None, **removes: int) -> SendDraftForm:
    """The draft's Send form; its preview `shown`, or a ready one removing `removes` (snapshot 7)."""
    if shown is None and removes:
        shown = impact(removes.get("replace", 0), removes.get("remove", 0))
    return SendDraftForm(data, segment_key="vip", asks_about_header=False, impact=shown)


@pytest.mark.parametrize("typed", ["3,000", "3 000", "3000", "3\u00a0000", "3\u202f000", " 3,000 "])
def test_a_number_is_accepted_grouped_as_the_page_shows_it(typed: str) -> None:
    form = send_form({"mode": "replace", "preview": "7", "confirm_removed": typed}, replace=3000)
    assert form.is_valid(), form.errors
    assert form.cleaned_data["confirm_removed"] == 3000


@pytest.mark.parametrize("typed", ["3.000", "30,00", "3,0000", "3,000,", "three", "-3000", "3e3", "３０００"])
def test_anything_else_is_not_read_as_the_number(typed: str) -> None:
    form = send_form({"mode": "replace", "preview": "7", "confirm_removed": typed}, replace=3000)
    assert form.errors == {"confirm_removed": ["Type the number of members it removes, in digits."]}


def test_each_mode_checks_its_own_number_in_the_one_field() -> None:
    removes = {"replace": 3000, "remove": 1}
    form = send_form({"mode": "remove", "preview": "7", "confirm_removed": "3000"}, **removes)
    assert form.errors == {
        "confirm_removed": ["A remove takes 1 member out of the segment: type 1 to confirm."]
    }
    form = send_form({"mode": "remove", "preview": "7", "confirm_removed": "1"}, **removes)
    assert form.is_valid(), form.errors
    form = send_form({"mode": "replace", "preview": "7", "confirm_removed": "1"}, **removes)
    assert form.errors == {
        "confirm_removed": ["A replace removes 3,000 members: type 3,000 to confirm, or choose Merge."]
    }
    form = send_form({"mode": "replace", "preview": "7"}, **removes)  # nothing typed
    assert form.errors == {
        "confirm_removed": ["A replace removes 3,000 members: type 3,000 to confirm, or choose Merge."]
    }
    form = send_form({"mode": "merge"}, **removes)  # a merge removes no one: no number
    assert form.is_valid(), form.errors


def test_one_field_and_what_to_type_says_which_mode_each_number_is_for() -> None:
    both = send_form({}, replace=3000, remove=2)
    assert [name for name in both.fields if name.startswith("confirm")] == ["confirm_removed"]
    assert both["confirm_removed"].label == "Type the number of members it removes"
    assert both.confirmations == [
        ("replace", "Replace: type 3,000 to confirm that 3,000 members will be removed."),
        ("remove", "Remove: type 2 to confirm that 2 members will leave the segment."),
    ]
    assert both.initial["preview"] == "7"  # the page sends back which preview it showed
    one = send_form({}, replace=1, remove=0)
    assert one.confirmations == [("replace", "Replace: type 1 to confirm that 1 member will be removed.")]


def test_nothing_removed_asks_for_no_number() -> None:
    form = send_form({"mode": "replace", "preview": "7"}, impact(0, 0))
    assert form.confirmations == []
    assert "confirm_removed" not in form.fields
    assert form.is_valid(), form.errors


def test_a_form_offering_replace_only_asks_nothing_of_the_other_modes() -> None:
    form = send_form({"mode": "remove", "preview": "7"}, replace=2, remove=5)
    form.offer_only(["replace"], "A restore is sent as a replace: choose Replace.")
    assert form.confirmations == [("replace", "Replace: type 2 to confirm that 2 members will be removed.")]
    assert form.errors == {"mode": ["A restore is sent as a replace: choose Replace."]}


@pytest.mark.parametrize("mode", ["replace", "remove"])
def test_a_replace_or_remove_goes_only_on_the_ready_recent_preview_the_page_showed(
    mode: str, settings: Any
) -> None:
    settings.IMPORT_PREVIEW_MAX_AGE_MINUTES = 60
    verb = f"A {mode}"
    typed = {"mode": mode, "preview": "7", "confirm_removed": "3"}
    # No preview at all, or a failed one: refused, and the view is told to make one.
    for shown, why in (
        (None, ""),
        (Preview("failed", message="LaunchDarkly is down."), " (LaunchDarkly is down)"),
    ):
        form = send_form(typed, shown)
        assert form.errors == {
            "__all__": [
                f"{verb} is sent only after you have seen what it removes, and there is no preview{why}. "
                "It is being made now: check it and send again once it shows."
            ]
        }
        assert form.wants_new_preview
    # Still running: refused; the one running goes on.
    form = send_form({**typed, "without_preview": "1"}, Preview("exporting"))
    assert form.errors == {
        "__all__": [
            f"{verb} is sent only after you have seen what it removes: wait for the preview, "
            "then type its number."
        ]
    }
    assert not form.wants_new_preview
    # Too old: refused, and made again.
    form = send_form(typed, impact(3, 3, stale=True))
    assert form.errors == {
        "__all__": [
            "This preview was made more than 60 minutes ago. It is being made again on the members as "
            "they are now: check it and send again once it shows."
        ]
    }
    assert form.wants_new_preview
    # Another preview than the one now made (a page left open), or none said: refused.
    for other in ("6", "", None):
        form = send_form({**typed, "preview": other}, impact(3, 3))
        assert form.errors == {
            "__all__": [
                "The preview changed since this page was shown: check the new numbers below and type the "
                "new number to send."
            ]
        }, other
        assert not form.wants_new_preview
    form = send_form(typed, impact(3, 3))
    assert form.is_valid(), form.errors


def test_a_merge_goes_while_the_preview_runs_only_by_the_explicit_button() -> None:
    form = send_form({"mode": "merge"}, Preview("comparing"))
    assert form.errors == {"__all__": [PREVIEW_RUNNING]}
    form = send_form({"mode": "merge", "without_preview": "1"}, Preview("comparing"))
    assert form.is_valid(), form.errors


@pytest.mark.parametrize("mode", ["merge", "replace"])
def test_the_header_question_answered_needs_no_number_yet(mode: str) -> None:
    """A replace is checked again with the answer and comes back as a draft to confirm: nothing is sent
    on this form, so no number is asked yet (the preview of the file with its header is not the one
    that will be confirmed)."""
    data = {"mode": mode, "first_row": "header"}
    form = SendDraftForm(data, segment_key="vip", asks_about_header=True, impact=impact(3, 3))
    assert form.is_valid(), form.errors
    unanswered = SendDraftForm({"mode": mode}, segment_key="vip", asks_about_header=True, impact=impact(3, 3))
    assert unanswered.errors["first_row"] == ["Say whether the first row is a header before sending."]


@pytest.mark.parametrize("sandbox", [True, False])
def test_wait_for_approvals_says_what_it_does_where_the_import_goes(sandbox: bool) -> None:
    """No sandbox environment can require approvals, so "if this environment requires approval"
    told a sandbox user nothing about when to tick it. The words come with the mode's settings (the
    product has no sandbox branch), so each mode is read in a process started in it."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith(("LD_", "DJANGO_"))}
    env |= {"DJANGO_SETTINGS_MODULE": "dashboard.settings", "SECRET_KEY": "x" * 50}
    env |= {"LD_SANDBOX": "1"} if sandbox else {"LD_API_TOKEN": "api-test-token"}
    code = (
        "import django; django.setup(); from segments_app.forms import ImportForm; "
        "print(ImportForm(segment_key='vip').fields['wait_on_approvals'].help_text)"
    )
    said = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60, check=True
    ).stdout
    if sandbox:
        assert said.startswith("In the sandbox, a ticked import waits until someone approves it")
    else:
        assert said.startswith("If this environment requires approval, the import waits in LaunchDarkly")
