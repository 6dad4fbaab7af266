"""Forms own validation, and turn LaunchDarkly's refusals into messages next to the right field."""

from __future__ import annotations

import re
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django import forms
from django.conf import settings

from segments_app import lookup
from segments_app.error_messages import describe
from segments_app.imports.preview import Preview
from segments_app.launchdarkly import (
    Conflict,
    InvalidRequest,
    LaunchDarklyError,
    NotFound,
    RateLimited,
    Unauthorized,
    UpstreamUnavailable,
)
from segments_app.models import ImportStatus

KEY_PATTERN = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")
TAG_PATTERN = re.compile(r"^[a-zA-Z0-9_.-]{1,64}$")
CONTEXT_KIND_PATTERN = re.compile(r"^[a-zA-Z0-9._-]+$")
UNAVAILABLE_NOTHING_CREATED = "LaunchDarkly is unavailable; nothing was created; try again."
UNAVAILABLE_NOTHING_DELETED = "LaunchDarkly is unavailable; nothing was deleted; try again."
# LaunchDarkly documents no limit; a bound keeps a pasted document out of the segment and its pages.
DESCRIPTION_MAX_LENGTH = 4096


def new_submission_token() -> str:
    return uuid.uuid4().hex


class CheckboxInput(forms.CheckboxInput):
    """A checkbox that hands its field what was sent, not Django's guess at a boolean ("maybe" is
    truthy, so it would read as ticked). Named like Django's, so templates see `widget_type` "checkbox"."""

    def value_from_datadict(self, data: Any, files: Any, name: str) -> Any:
        return data.get(name)


class CheckboxField(forms.BooleanField):
    """A tick box that takes only what a browser sends for one: nothing (unticked) or "on" (ticked).

    Anything else was not sent by this form, and reading it as yes could, say, make an import wait for
    approvals nobody asked for: it is refused with a message, not guessed."""

    widget = CheckboxInput
    default_error_messages = {"invalid": "Tick the box or leave it empty; “%(value)s” is neither."}

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("required", False)
        super().__init__(**kwargs)

    def to_python(self, value: Any) -> bool:
        if value in (None, "", False):
            return False
        if value in ("on", True):
            return True
        raise forms.ValidationError(
            self.error_messages["invalid"], code="invalid", params={"value": str(value)[:40]}
        )


class SegmentForm(forms.Form):
    name = forms.CharField(max_length=256, help_text="What people will call this segment.")
    key = forms.CharField(
        max_length=256,
        help_text="Used in code and the API. Letters, digits, '.', '_' and '-'; "
        "must start with a letter or digit. It cannot be changed later.",
    )
    description = forms.CharField(
        required=False, max_length=DESCRIPTION_MAX_LENGTH, widget=forms.Textarea(attrs={"rows": 3})
    )
    tags = forms.CharField(
        required=False,
        max_length=1024,
        help_text="Separate tags with commas. Each: 1–64 letters, digits, '.', '_' or '-'.",
    )
    unbounded = CheckboxField(
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
        if cleaned.get("unbounded") and "context_kind" not in self.errors:
            kind = (cleaned.get("context_kind") or "").strip()
            if not kind:
                self.add_error("context_kind", "A big segment needs a context kind, for example user.")
            elif not CONTEXT_KIND_PATTERN.match(kind) or kind in ("kind", "multi"):
                self.add_error(
                    "context_kind", "Use only letters, digits, '.', '_' and '-' (and not 'kind' or 'multi')."
                )
            else:
                cleaned["context_kind"] = kind
        elif not cleaned.get("unbounded"):
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

    q = forms.CharField(
        required=False,
        max_length=200,
        label="Search",
        widget=forms.SearchInput(attrs={"placeholder": "Name, key or description", "autocomplete": "off"}),
    )
    tag = forms.CharField(
        required=False, max_length=64, label="Tag", widget=forms.TextInput(attrs={"autocomplete": "off"})
    )
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
    ("remove", "Remove — the keys in this file leave the segment; other members stay"),
]
# Replace and remove take members out of a segment: they always go through a draft, whose impact
# preview says how many members leave; sending one asks to type that number, once.
DESTRUCTIVE_MODES = ("replace", "remove")
# Separators a person may type inside a number: "3,000", "3 000" (also a no-break or thin space), "3000".
GROUPED_NUMBER = re.compile(r"[0-9]+|[0-9]{1,3}(?:[, \u00a0\u202f\u2009][0-9]{3})+")


def members_text(count: int) -> str:
    """A count of members as the page writes it: grouped ("3,000 members"), singular for one."""
    return f"{count:,} member{'' if count == 1 else 's'}"


class TypedCountField(forms.CharField):
    """A number typed to confirm one the page shows grouped: "3,000", "3 000" and "3000" are all 3000."""

    def to_python(self, value: Any) -> int | None:  # type: ignore[override]
        text = super().to_python(value)
        if text in self.empty_values:
            return None
        if len(text) > 32 or not GROUPED_NUMBER.fullmatch(text):
            raise forms.ValidationError(self.error_messages["invalid"], code="invalid")
        return int(re.sub("[^0-9]", "", text))


class SendChoicesForm(forms.Form):
    """How a checked list is sent: the mode and approvals. Shared by the upload form and a draft's
    Send form, so both offer the same."""

    mode = forms.ChoiceField(
        choices=MODE_CHOICES,
        initial="merge",
        widget=forms.RadioSelect,
        error_messages={
            "invalid_choice": "Choose Merge, Replace or Remove.",
            "required": "Choose Merge, Replace or Remove.",
        },
    )
    wait_on_approvals = CheckboxField(label="Wait for approvals")

    def __init__(self, *args: Any, segment_key: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.segment_key = segment_key
        # Where the import goes decides what ticking it means: the words come with the settings.
        self.fields["wait_on_approvals"].help_text = settings.WAIT_ON_APPROVALS_HELP

    @property
    def offered(self) -> list[str]:
        """The modes this form lets a person choose."""
        return [value for value, _label in self.fields["mode"].choices]

    def offer_only(self, modes: list[str], refusal: str) -> None:
        """Offer only these modes (a restore is sent as a replace): any other is refused with `refusal`."""
        field = self.fields["mode"]
        field.choices = [choice for choice in field.choices if choice[0] in modes]
        field.error_messages["invalid_choice"] = refusal


@dataclass(frozen=True)
class EarlierFile:
    """A refused file that an upload corrects: its name, and the problems found in it (the first ones,
    each {"line", "message"}, and how many in all)."""

    name: str
    problems: list[dict[str, Any]]
    problem_count: int
    problems_url: str = ""  # the CSV of all its problems, while it is kept

    @property
    def more(self) -> int:
        return max(self.problem_count - len(self.problems), 0)


class CorrectedFileBoundField(forms.BoundField):
    """The file field of an upload that corrects a refused file: the problems found in that file are
    listed beside the field and read with it (aria-describedby), like its help and its errors."""

    @property
    def earlier(self) -> EarlierFile | None:
        return self.form.earlier

    @property
    def aria_describedby(self) -> str | None:
        described_by = super().aria_describedby
        if self.earlier and self.auto_id and described_by is not None:
            return f"{described_by} {self.auto_id}_problems".strip()
        return described_by


class ImportForm(SendChoicesForm):
    """The upload form. Its "Check and send" button sends a sound Merge as soon as it is checked; a
    Replace or a Remove is always kept as a draft whatever the button, to be sent from its preview."""

    file = forms.FileField(
        bound_field_class=CorrectedFileBoundField,
        label="CSV file",
        error_messages={"required": "Choose a CSV file to upload."},
        help_text="Context keys in the first column, one per row. Other columns are ignored.",
    )
    has_header = CheckboxField(
        label="First row is a header",
        help_text="Skip the first row (for example “email” or “key”).",
    )
    submission_token = forms.CharField(widget=forms.HiddenInput, max_length=64)
    field_order = ["file", "mode", "has_header", "wait_on_approvals"]

    def __init__(self, *args: Any, earlier: EarlierFile | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.earlier = earlier  # the refused file this upload corrects: its problems are shown at the field
        # The limit is part of the field's help, so a screen reader says it with the field.
        limit_mb = settings.IMPORT_MAX_UPLOAD_BYTES // (1024 * 1024)
        self.fields["file"].help_text = (
            f"{self.fields['file'].help_text} At most {limit_mb:,} MB; "
            "a list larger than one LaunchDarkly import takes is split into several automatically."
        )
        if not self.is_bound:
            self.initial.setdefault("submission_token", new_submission_token())

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        action = self.data.get("action") or "upload"
        if action not in ("check", "upload"):  # not one of the form's two buttons: never guess "send"
            self.add_error(None, "Choose “Check file” or “Check and send”.")
        # Only a merge is ever sent straight from the upload form.
        cleaned["send"] = action == "upload" and cleaned.get("mode") not in DESTRUCTIVE_MODES
        return cleaned


class SendDraftForm(SendChoicesForm):
    """Sending a checked draft. A replace or a remove asks one thing: the number of members it removes,
    as the preview shown on the page counts them (`preview` says which one it was, so a page left open
    while the preview was made again cannot confirm the old one). When the first row looked like a
    header, the person says what it is first."""

    first_row = forms.ChoiceField(
        required=False,
        widget=forms.RadioSelect,
        label="Is the first row a header?",
        choices=[
            ("header", "Yes — it is a column title: leave it out"),
            ("key", "No — it is a context key: import it"),
        ],
    )
    confirm_removed = TypedCountField(
        required=False,
        label="Type the number of members it removes",
        widget=forms.TextInput(attrs={"inputmode": "numeric", "autocomplete": "off"}),
        error_messages={"invalid": "Type the number of members it removes, in digits."},
    )
    # The preview (its member snapshot's id) the page showed when the number was typed.
    preview = forms.CharField(required=False, widget=forms.HiddenInput, max_length=20)
    # Set by "Send as Merge without the preview": the person chose not to wait.
    without_preview = forms.BooleanField(required=False, widget=forms.HiddenInput)

    def __init__(
        self,
        *args: Any,
        asks_about_header: bool,
        first_row_text: str = "",
        impact: Preview | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.asks_about_header = asks_about_header
        self.impact = impact
        # Set by `clean` when the preview must be made (again) before a replace or a remove can go.
        self.wants_new_preview = False
        if not asks_about_header:
            del self.fields["first_row"]
        elif first_row_text:  # the question quotes the row, so the person needs no other page to answer
            self.fields["first_row"].label = f"The first row is “{first_row_text}”. Is it a header?"
        ready = impact is not None and impact.state == "ready"
        self.removes: dict[str, int] = {}
        if ready and impact is not None:
            self.removes = {mode: impact.removes(mode) or 0 for mode in DESTRUCTIVE_MODES}
            self.initial.setdefault("preview", str(impact.snapshot_id or ""))
        if not any(self.removes.values()):
            del self.fields["confirm_removed"]

    @property
    def confirmations(self) -> list[tuple[str, str]]:
        """(mode, what to type) for each offered mode that removes members: the page shows only the
        chosen mode's (app.js), and without JavaScript each says which mode it is for."""
        found = []
        for mode in DESTRUCTIVE_MODES:
            count = self.removes.get(mode) or 0
            if count and mode in self.offered:
                leave = "will be removed" if mode == "replace" else "will leave the segment"
                found.append(
                    (
                        mode,
                        f"{mode.capitalize()}: type {count:,} to confirm that {members_text(count)} {leave}.",
                    )
                )
        return found

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        mode = cleaned.get("mode")
        answer = cleaned.get("first_row") or ""
        if self.asks_about_header and not answer:
            self.add_error("first_row", "Say whether the first row is a header before sending.")
        if mode in DESTRUCTIVE_MODES and not answer:
            self._check_confirmation(mode, cleaned)
        elif (
            self.impact is not None and self.impact.running and not (cleaned.get("without_preview") or answer)
        ):
            # Sending a merge without the preview is a choice made explicitly, never by accident.
            self.add_error(None, PREVIEW_RUNNING)
        return cleaned

    def _check_confirmation(self, mode: str, cleaned: dict[str, Any]) -> None:
        """A replace or a remove goes only on a ready, recent preview, the one the page showed, with its
        number typed. Anything else is refused with what to do, and nothing is sent."""
        impact, verb = self.impact, "A replace" if mode == "replace" else "A remove"
        if impact is None or impact.state == "failed":
            self.wants_new_preview = True
            why = f" ({impact.message.rstrip('.')})" if impact is not None and impact.message else ""
            self.add_error(
                None,
                f"{verb} is sent only after you have seen what it removes, and there is no preview{why}. "
                "It is being made now: check it and send again once it shows.",
            )
            return
        if impact.running:
            self.add_error(
                None,
                f"{verb} is sent only after you have seen what it removes: wait for the preview, "
                "then type its number.",
            )
            return
        if impact.stale:
            self.wants_new_preview = True
            self.add_error(
                None,
                f"This preview was made more than {settings.IMPORT_PREVIEW_MAX_AGE_MINUTES:g} minutes ago. "
                "It is being made again on the members as they are now: check it and send again "
                "once it shows.",
            )
            return
        if (cleaned.get("preview") or "") != str(impact.snapshot_id):
            self.add_error(
                None,
                "The preview changed since this page was shown: check the new numbers below and type "
                "the new number to send.",
            )
            # What was typed confirmed the old numbers: the field starts empty for the new ones.
            self.data = self.data.copy()
            self.data["confirm_removed"] = ""
            return
        count = self.removes.get(mode) or 0
        if count and "confirm_removed" not in self.errors and cleaned.get("confirm_removed") != count:
            removed, typed = members_text(count), f"type {count:,} to confirm"
            if mode == "replace":
                self.add_error("confirm_removed", f"A replace removes {removed}: {typed}, or choose Merge.")
            else:
                self.add_error("confirm_removed", f"A remove takes {removed} out of the segment: {typed}.")


PREVIEW_RUNNING = (
    "The comparison with the segment's members is still running: wait for it, "
    "or choose Send as Merge without the preview."
)


class HistoryFilterForm(forms.Form):
    """The import history's filters; each that does not parse is left out on its own."""

    project = forms.CharField(required=False, max_length=140)
    environment = forms.CharField(required=False, max_length=140)
    segment = forms.CharField(required=False, max_length=256)
    file = forms.CharField(required=False, max_length=255, label="File name")
    status = forms.ChoiceField(required=False, choices=[])
    user = forms.CharField(required=False, max_length=150, label="User")
    since = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}), label="From")
    until = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}), label="Until")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["status"].choices = [("", "Any status"), *ImportStatus.choices]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        since, until = cleaned.get("since"), cleaned.get("until")
        if since and until and since > until:
            self.add_error("until", "Until is before From: choose a date on or after From.")
        return cleaned

    def values(self) -> dict[str, Any]:
        """The filters that parse; the page says which were left out and why (`left_out`)."""
        self.is_valid()
        return {name: value for name, value in self.cleaned_data.items() if value not in ("", None)}

    def left_out(self) -> list[str]:
        """Each filter that was not applied, in words: a hand-edited address or dates the wrong way round
        would otherwise change the list without saying so."""
        return [
            f"{self.fields[name].label or name.title()}: {' '.join(errors)}"
            for name, errors in self.errors.items()
        ]


# A list of 10,000 keys of LaunchDarkly's longest (512 characters) fits; anything bigger is not such a list.
LOOKUP_MAX_BYTES = 6 * 1024 * 1024


class LookupForm(forms.Form):
    """Keys to look up in a big segment: pasted, or a CSV file (its first column), normalised like an
    import's. `cleaned_data["listed"]` is the `lookup.KeyList`."""

    keys = forms.CharField(
        required=False,
        strip=False,
        max_length=LOOKUP_MAX_BYTES,
        label="Context keys",
        widget=forms.Textarea(attrs={"rows": 8, "spellcheck": "false", "autocomplete": "off"}),
        help_text="One key a line, up to 10,000. Spaces around a key, blank lines and repeats are left out.",
    )
    file = forms.FileField(
        required=False,
        label="Or a CSV file",
        help_text="Context keys in the first column, one per row; other columns are ignored.",
    )

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        text, upload = cleaned.get("keys") or "", cleaned.get("file")
        if self.errors:
            return cleaned
        if upload is not None and text.strip():
            raise forms.ValidationError("Paste keys or choose a file, not both.")
        if upload is None and not text.strip():
            raise forms.ValidationError("Paste the keys to look up, or choose a CSV file of them.")
        if upload is not None and upload.size > LOOKUP_MAX_BYTES:
            limit_mb = LOOKUP_MAX_BYTES // (1024 * 1024)
            self.add_error(
                "file",
                f"The file is larger than {limit_mb} MB: a list of 10,000 keys is far smaller. "
                "Look up fewer keys at once.",
            )
            return cleaned
        with tempfile.TemporaryDirectory(prefix="lookup-list-") as folder:
            source = Path(folder) / "keys.csv"
            with source.open("wb") as out:
                if upload is not None:
                    for chunk in upload.chunks():
                        out.write(chunk)
                else:
                    out.write(text.encode("utf-8", "surrogatepass"))
            try:
                cleaned["listed"] = lookup.read_keys(source)
            except lookup.KeyListRefused as refused:
                self.add_error("file" if upload is not None else "keys", str(refused))
        return cleaned
