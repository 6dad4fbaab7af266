"""Forms own validation, and turn LaunchDarkly's refusals into messages next to the right field."""

from __future__ import annotations

import re
import uuid
from typing import Any

from django import forms

from segments_app.error_messages import describe
from segments_app.launchdarkly import (
    Conflict,
    InvalidRequest,
    LaunchDarklyError,
    NotFound,
    RateLimited,
    Unauthorized,
    UpstreamUnavailable,
)

KEY_PATTERN = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")
TAG_PATTERN = re.compile(r"^[a-zA-Z0-9_.-]{1,64}$")
CONTEXT_KIND_PATTERN = re.compile(r"^[a-zA-Z0-9._-]+$")
UNAVAILABLE_NOTHING_CREATED = "LaunchDarkly is unavailable; nothing was created; try again."
UNAVAILABLE_NOTHING_DELETED = "LaunchDarkly is unavailable; nothing was deleted; try again."


def new_submission_token() -> str:
    return uuid.uuid4().hex


class SegmentForm(forms.Form):
    name = forms.CharField(max_length=256, help_text="What people will call this segment.")
    key = forms.CharField(
        max_length=256,
        help_text="Used in code and the API. Letters, digits, '.', '_' and '-'; "
        "must start with a letter or digit. It cannot be changed later.",
    )
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 3}))
    tags = forms.CharField(
        required=False, help_text="Separate tags with commas. Each: 1–64 letters, digits, '.', '_' or '-'."
    )
    unbounded = forms.BooleanField(
        required=False,
        label="Big segment",
        help_text="For lists of more than 15,000 context keys, uploaded as CSV files. "
        "Cannot be changed later.",
    )
    context_kind = forms.CharField(
        required=False,
        initial="user",
        max_length=64,
        label="Context kind",
        help_text="The kind of context the list's keys belong to (big segments only), "
        "for example user or device.",
    )
    submission_token = forms.CharField(widget=forms.HiddenInput, max_length=64)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.page_errors: list[str] = []
        if not self.is_bound:
            self.initial.setdefault("submission_token", new_submission_token())

    def clean_key(self) -> str:
        key = self.cleaned_data["key"].strip()
        if not KEY_PATTERN.match(key):
            raise forms.ValidationError(
                "Use only letters, digits, '.', '_' and '-', starting with a letter or digit."
            )
        return key

    def clean_tags(self) -> list[str]:
        tags = [t.strip() for t in self.cleaned_data["tags"].split(",") if t.strip()]
        bad = [t for t in tags if not TAG_PATTERN.match(t)]
        if bad:
            raise forms.ValidationError(
                "These tags are not allowed: %(tags)s. A tag is 1–64 letters, digits, '.', '_' or '-'.",
                params={"tags": ", ".join(bad)},
            )
        return list(dict.fromkeys(tags))

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        if cleaned.get("unbounded"):
            kind = (cleaned.get("context_kind") or "").strip()
            if not kind:
                self.add_error("context_kind", "A big segment needs a context kind, for example user.")
            elif not CONTEXT_KIND_PATTERN.match(kind) or kind in ("kind", "multi"):
                self.add_error(
                    "context_kind", "Use only letters, digits, '.', '_' and '-' (and not 'kind' or 'multi')."
                )
            else:
                cleaned["context_kind"] = kind
        else:
            cleaned["context_kind"] = ""
        return cleaned

    def add_launchdarkly_error(self, error: LaunchDarklyError, environment_name: str) -> None:
        """Put LaunchDarkly's refusal where the person will look for it; keep what they typed."""
        if isinstance(error, Conflict):
            key = self.cleaned_data.get("key", "")
            self.add_error("key", f'A segment with key "{key}" already exists in {environment_name}.')
        elif isinstance(error, InvalidRequest):
            self.add_error(None, f"LaunchDarkly refused the segment: {error.message}")
        elif isinstance(error, (RateLimited, UpstreamUnavailable)):
            self.page_errors.append(UNAVAILABLE_NOTHING_CREATED)
        elif isinstance(error, NotFound):
            self.page_errors.append("LaunchDarkly does not know this project or environment.")
        elif isinstance(error, Unauthorized):
            self.page_errors.append(describe(error))
        else:
            self.page_errors.append(describe(error))


class DeleteSegmentForm(forms.Form):
    confirm_key = forms.CharField(label="Type the segment key to confirm", max_length=256)
    submission_token = forms.CharField(widget=forms.HiddenInput, max_length=64)

    def __init__(self, *args: Any, segment_key: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.segment_key = segment_key
        self.page_errors: list[str] = []
        if not self.is_bound:
            self.initial.setdefault("submission_token", new_submission_token())

    def clean_confirm_key(self) -> str:
        typed = self.cleaned_data["confirm_key"].strip()
        if typed != self.segment_key:
            raise forms.ValidationError(f'Type "{self.segment_key}" exactly to confirm.')
        return typed

    def add_launchdarkly_error(self, error: LaunchDarklyError) -> None:
        if isinstance(error, (RateLimited, UpstreamUnavailable)):
            self.page_errors.append(UNAVAILABLE_NOTHING_DELETED)
        elif isinstance(error, NotFound):
            self.page_errors.append(
                "LaunchDarkly has no such segment any more: it may have been deleted already."
            )
        elif isinstance(error, Conflict):
            self.page_errors.append(f"LaunchDarkly refused to delete the segment: {error.message}")
        else:
            self.page_errors.append(describe(error))


SORT_CHOICES = [
    ("name", "Name (A–Z)"),
    ("-name", "Name (Z–A)"),
    ("-lastModified", "Recently modified"),
    ("lastModified", "Least recently modified"),
]
KIND_CHOICES = [("", "All kinds"), ("big", "Big segments"), ("standard", "Standard segments")]


class SegmentFilterForm(forms.Form):
    """The list's query string. Values that do not parse fall back to the defaults."""

    q = forms.CharField(required=False, max_length=200, label="Search")
    tag = forms.CharField(required=False, max_length=64, label="Tag")
    kind = forms.ChoiceField(required=False, choices=KIND_CHOICES, label="Kind")
    sort = forms.ChoiceField(required=False, choices=SORT_CHOICES, label="Sort by")
    page = forms.IntegerField(required=False, min_value=1)

    def values(self) -> dict[str, Any]:
        self.is_valid()  # fields that fail are left out of cleaned_data, so each falls back on its own
        data = self.cleaned_data
        kind = data.get("kind") or ""
        return {
            "query": (data.get("q") or "").strip(),
            "tag": (data.get("tag") or "").strip(),
            "unbounded": {"big": True, "standard": False}.get(kind),
            "sort": data.get("sort") or "name",
            "page": data.get("page") or 1,
        }

    @property
    def is_filtered(self) -> bool:
        values = self.values()
        return bool(values["query"] or values["tag"] or values["unbounded"] is not None)


MODE_CHOICES = [
    ("merge", "Merge — add these keys to the segment's current members"),
    ("replace", "Replace — the segment will contain exactly the keys in this file"),
]
REPLACE_HELP = "Replace removes every current member that is not in the file."


class SendChoicesForm(forms.Form):
    """How a checked list is sent: the mode, its confirmation, and approvals. Shared by the upload
    form and a draft's Send form, so both ask the same and refuse the same."""

    mode = forms.ChoiceField(choices=MODE_CHOICES, initial="merge", widget=forms.RadioSelect)
    confirm_key = forms.CharField(
        required=False, max_length=256, label="To replace, type the segment key", help_text=REPLACE_HELP
    )
    wait_on_approvals = forms.BooleanField(
        required=False,
        label="Wait for approvals",
        help_text="If this environment requires approval, the import waits in LaunchDarkly "
        "until it is approved.",
    )

    def __init__(self, *args: Any, segment_key: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.segment_key = segment_key
        self.fields["confirm_key"].label = f"To replace, type the segment key “{segment_key}”"
        self.fields["confirm_key"].widget.attrs["data-segment-key"] = segment_key

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        if (
            cleaned.get("mode") == "replace"
            and (cleaned.get("confirm_key") or "").strip() != self.segment_key
        ):
            self.add_error("confirm_key", f'{REPLACE_HELP} Type "{self.segment_key}" to confirm.')
        return cleaned


class ImportForm(SendChoicesForm):
    file = forms.FileField(
        label="CSV file",
        help_text="Context keys in the first column, one per row. Other columns are ignored.",
    )
    has_header = forms.BooleanField(
        required=False,
        label="First row is a header",
        help_text="Skip the first row (for example “email” or “key”).",
    )
    submission_token = forms.CharField(widget=forms.HiddenInput, max_length=64)
    field_order = ["file", "mode", "confirm_key", "has_header", "wait_on_approvals"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not self.is_bound:
            self.initial.setdefault("submission_token", new_submission_token())

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        if self.data.get("action") == "check":
            # A check sends nothing: the replace confirmation is asked when the draft is sent.
            self.errors.pop("confirm_key", None)
        return cleaned


class SendDraftForm(SendChoicesForm):
    """Sending a checked draft; when its first row looked like a header, the person says what it is."""

    first_row = forms.ChoiceField(
        required=False,
        widget=forms.RadioSelect,
        label="Is the first row a header?",
        choices=[
            ("header", "Yes — it is a column title: leave it out"),
            ("key", "No — it is a context key: import it"),
        ],
    )

    def __init__(self, *args: Any, asks_about_header: bool, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.asks_about_header = asks_about_header
        if not asks_about_header:
            del self.fields["first_row"]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        if self.asks_about_header and not cleaned.get("first_row"):
            self.add_error("first_row", "Say whether the first row is a header before sending.")
        cleaned["first_row_is_header"] = cleaned.get("first_row") == "header"
        return cleaned


class HistoryFilterForm(forms.Form):
    """The import history's filters; each that does not parse is left out on its own."""

    project = forms.CharField(required=False, max_length=140)
    environment = forms.CharField(required=False, max_length=140)
    segment = forms.CharField(required=False, max_length=256)
    status = forms.ChoiceField(required=False, choices=[])
    user = forms.CharField(required=False, max_length=150, label="User")
    since = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}), label="From")
    until = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}), label="Until")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        from segments_app.models import ImportStatus

        super().__init__(*args, **kwargs)
        self.fields["status"].choices = [("", "Any status"), *ImportStatus.choices]

    def values(self) -> dict[str, Any]:
        self.is_valid()
        return {name: value for name, value in self.cleaned_data.items() if value not in ("", None)}
