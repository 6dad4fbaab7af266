"""What every browser scenario checks and keeps: axe-core's verdict on a page, and screenshots of it at
a wide and a narrow window, under test-artifacts/ (ignored by git)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
WIDE = {"width": 1280, "height": 800}
NARROW = {"width": 390, "height": 844}


def assert_accessible(page: Any) -> None:
    """axe-core on the page as it is now: fail on any serious or critical violation, listing each."""
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page)
    bad = [v for v in results.response["violations"] if v.get("impact") in ("serious", "critical")]
    lines = [
        f"- {v['id']} ({v['impact']}): {v['help']} — "
        + "; ".join(
            ", ".join(node["target"]) if isinstance(node["target"], list) else str(node["target"])
            for node in v["nodes"][:5]
        )
        for v in bad
    ]
    assert not bad, f"axe-core found serious or critical violations on {page.url}:\n" + "\n".join(lines)
    # Status badges say their status in words: their colour alone tells a colour-blind person nothing.
    wordless = page.locator(".badge, .status, [class*='badge-'], [class*='status-']").evaluate_all(
        "els => els.filter(el => el.getClientRects().length && !el.textContent.trim()).map(el => el.outerHTML)"
    )
    assert wordless == [], f"status badges without words on {page.url}: {wordless}"


def snap(page: Any, name: str, *, check: bool = True) -> None:
    """Full-page screenshots at 1280 px and 390 px wide (test-artifacts/<name>-1280.png, -390.png),
    after axe-core found nothing serious on the page (unless `check` is False)."""
    if check:
        assert_accessible(page)
    ARTIFACTS.mkdir(exist_ok=True)
    size = page.viewport_size or WIDE
    for viewport in (WIDE, NARROW):
        page.set_viewport_size(viewport)
        # caret="initial": hiding the caret leaves style="" on inputs, which a later htmx history
        # restore re-parses and the page's CSP then refuses (a console error the app did not cause).
        page.screenshot(
            path=str(ARTIFACTS / f"{name}-{viewport['width']}.png"), full_page=True, caret="initial"
        )
        # A phone-wide window never scrolls sideways as a whole: wide tables scroll inside their box.
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"{page.url} is {overflow} px wider than a {viewport['width']} px window"
    page.set_viewport_size(size)


def csv_file(tmp_path: Path, name: str, lines: list[str]) -> Path:
    path = tmp_path / name
    path.write_text("".join(f"{line}\n" for line in lines))
    return path


def control(scope: Any, name: str | re.Pattern[str]) -> Any:
    """A link or button by its accessible name: links styled as buttons carry role="button", and which
    of the two a control is may change without the person seeing any difference."""
    return scope.get_by_role("link", name=name).or_(scope.get_by_role("button", name=name))


def sandbox_members(segment_key: str, environment: str, keys: list[str]) -> Any:
    """Make the sandbox segment's members exactly `keys` (as if someone set them in LaunchDarkly)."""
    from sandbox.models import SandboxMember, SandboxSegment

    segment = SandboxSegment.objects.get(key=segment_key, environment__key=environment)
    SandboxMember.objects.filter(segment=segment).delete()
    SandboxMember.objects.bulk_create(
        SandboxMember(segment=segment, context_key=key, generation=segment.live_generation) for key in keys
    )
    SandboxSegment.objects.filter(pk=segment.pk).update(included_count=len(keys))
    segment.refresh_from_db()
    return segment
