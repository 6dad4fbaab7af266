"""The impact preview's comparison (segments_app/imports/compare.py): exact counts and real samples.

Crafted cases name the traps (duplicates, blanks, case, spaces, quoting, line breaks inside keys);
random cases are checked against a plain reference with Python sets, over many buckets as well as one.
"""

from __future__ import annotations

import random
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from segments_app.imports import compare as compare_module
from segments_app.imports.compare import CompareError, Impact, compare
from segments_app.imports.validation import Limits, normalise_csv

ODD_KEYS = [
    "alice",
    "Alice",
    "ALICE",
    " alice",
    "alice ",
    "a,b",
    'say "hi"',
    "back\\slash",
    "back\\nslash",
    "line\nbreak",
    "cr\rkey",
    "café",
    "cafe\u0301",
    "東京",
    "𝔘𝔫𝔦",
    "\u00a0nbsp",
    "tab\tinside",
    "x",
]
BLANKS = ["", " ", "  \t ", "\u3000", "\u00a0", "\x1c"]


def write_keys(path: Path, rows: list[str], *, crlf: bool = False, bom: bool = False) -> Path:
    """A CSV with one key a row, quoted only where CSV needs it (a comma, quote or line break)."""
    end = "\r\n" if crlf else "\n"
    with path.open("w", encoding="utf-8-sig" if bom else "utf-8", newline="") as out:
        for row in rows:
            if any(char in row for char in ',"\r\n') or not row:
                row = '"' + row.replace('"', '""') + '"'
            out.write(row + end)
    return path


def reference(import_rows: list[str], member_rows: list[str], mode: str) -> dict[str, int]:
    """What compare() must say, computed the plain way."""
    ours = {key for key in import_rows if key.strip()}
    theirs = {key for key in member_rows if key.strip()}
    counts = {"import_keys": len(ours), "members": len(theirs)}
    if mode == "merge":
        counts |= {"add": len(ours - theirs), "unchanged": len(ours & theirs)}
    elif mode == "replace":
        counts |= {"add": len(ours - theirs), "remove": len(theirs - ours), "unchanged": len(ours & theirs)}
    else:
        counts |= {"remove": len(ours & theirs), "not_members": len(ours - theirs)}
    return counts


def counts_of(impact: Impact) -> dict[str, int]:
    data = impact.to_json()
    return {name: data[name] for name in data if name not in {"mode", "samples", "members_after"}}


def run(tmp_path: Path, import_rows: list[str], member_rows: list[str], mode: str, **kwargs) -> Impact:
    parts = [write_keys(tmp_path / "part-001.csv", import_rows)]
    members = write_keys(tmp_path / "members.csv", member_rows)
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    return compare(parts, members, mode=mode, workdir=work, **kwargs)


@pytest.fixture
def many_buckets(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tiny buckets, slices and flushes, so that small inputs take every path a big one takes."""
    monkeypatch.setattr(compare_module, "BUCKET_BYTES", 64)
    monkeypatch.setattr(compare_module, "SLICE_KEYS", 7)
    monkeypatch.setattr(compare_module, "FLUSH_KEYS", 50)
    monkeypatch.setattr(compare_module, "BLOCK_SIZE", 256)


def test_merge_counts_keys_to_add_and_keys_already_members(tmp_path: Path) -> None:
    impact = run(tmp_path, ["alice", "bob", "carol"], ["bob", "dave", "carol", "erin"], "merge")
    assert (impact.add, impact.unchanged, impact.remove, impact.members_after) == (1, 2, 0, 5)
    assert impact.samples["add"] == ["alice"]
    assert set(impact.samples["unchanged"]) == {"bob", "carol"}


def test_replace_counts_members_that_leave(tmp_path: Path) -> None:
    impact = run(tmp_path, ["alice", "bob", "carol"], ["bob", "dave", "carol", "erin"], "replace")
    assert (impact.add, impact.remove, impact.unchanged, impact.members_after) == (1, 2, 2, 3)
    assert set(impact.samples["remove"]) == {"dave", "erin"}
    assert impact.samples["add"] == ["alice"]


def test_remove_counts_listed_members_and_listed_strangers(tmp_path: Path) -> None:
    impact = run(tmp_path, ["alice", "bob", "carol"], ["bob", "dave", "carol", "erin"], "remove")
    assert (impact.remove, impact.not_members, impact.add, impact.members_after) == (2, 1, 0, 2)
    assert set(impact.samples["remove"]) == {"bob", "carol"}
    assert impact.samples["not_members"] == ["alice"]
    assert set(impact.to_json()) == {
        "mode",
        "import_keys",
        "members",
        "remove",
        "not_members",
        "members_after",
        "samples",
    }


@pytest.mark.parametrize("mode", ["merge", "replace", "remove"])
def test_keys_are_exact_case_and_spaces_matter_duplicates_and_blanks_do_not(
    tmp_path: Path, mode: str
) -> None:
    # Members exactly as LaunchDarkly holds them: " alice" and "Alice" are other contexts than "alice".
    members = ["alice", " alice", "Alice", "bob", "bob", "", "   ", "\u3000", "café", "carol", "carol"]
    imports = ["alice", "ALICE", "bob", "cafe\u0301", "café", "dave"]
    impact = run(tmp_path, imports, members, mode)
    expected = {
        "merge": {"add": 3, "unchanged": 3},  # add ALICE, café (decomposed), dave
        "replace": {"add": 3, "unchanged": 3, "remove": 3},  # remove " alice", Alice, carol
        "remove": {"remove": 3, "not_members": 3},
    }[mode]
    assert counts_of(impact) == {"import_keys": 6, "members": 6, **expected}
    assert counts_of(impact) == reference(imports, members, mode)


def test_keys_as_validation_sends_them(tmp_path: Path) -> None:
    """An upload's keys are trimmed and deduplicated by validation; the preview counts its parts,
    so " alice " in the upload is "alice" against the members, and "Alice" stays itself."""
    upload = tmp_path / "upload.csv"
    upload.write_text(' alice \nAlice\n\nalice\n"bob, jr"\n  carol\n', encoding="utf-8")
    report = normalise_csv(upload, tmp_path, has_header=False, limits=Limits())
    assert report.ok, report.problems
    members = write_keys(tmp_path / "members.csv", ["alice", "bob, jr", " carol", "dave"])
    work = tmp_path / "work"
    work.mkdir()
    parts = [Path(part.path) for part in report.parts]
    impact = compare(parts, members, mode="replace", workdir=work)
    assert (impact.import_keys, impact.add, impact.unchanged, impact.remove) == (4, 2, 2, 2)
    assert set(impact.samples["add"]) == {"Alice", "carol"}
    assert set(impact.samples["unchanged"]) == {"alice", "bob, jr"}
    assert set(impact.samples["remove"]) == {" carol", "dave"}


def test_member_file_quirks_crlf_bom_header_extra_columns_and_line_breaks(tmp_path: Path) -> None:
    members = tmp_path / "members.csv"
    members.write_bytes(
        b'\xef\xbb\xbfcontext key,kind\r\n"a,b",user\r\nplain,user\r\n"line\nbreak",user\r\n\r\n"q""uote",user\r\n'
    )
    parts = [write_keys(tmp_path / "part-001.csv", ["a,b", "line\nbreak", 'q"uote', "plain", "new"])]
    impact = compare(parts, members, mode="replace", workdir=tmp_path, members_header=True)
    assert (impact.members, impact.unchanged, impact.add, impact.remove) == (4, 4, 1, 0)
    assert set(impact.samples["unchanged"]) == {"a,b", "line\nbreak", 'q"uote', "plain"}
    without_header = compare(parts, members, mode="replace", workdir=tmp_path)
    assert without_header.remove == 1
    assert without_header.samples["remove"] == ["context key"]


def test_every_field_quoted_and_no_final_line_end(tmp_path: Path) -> None:
    members = tmp_path / "members.csv"
    members.write_bytes(b'"alice"\n"bob"\n"x,y"\n"carol"')
    parts = [write_keys(tmp_path / "part-001.csv", ["carol", "x,y", "zed"])]
    impact = compare(parts, members, mode="merge", workdir=tmp_path)
    assert (impact.members, impact.unchanged, impact.add) == (4, 2, 1)


@pytest.mark.parametrize("mode", ["merge", "replace", "remove"])
def test_empty_inputs(tmp_path: Path, mode: str) -> None:
    assert counts_of(run(tmp_path, [], [], mode)) == reference([], [], mode)
    assert counts_of(run(tmp_path, [], ["a", "b"], mode)) == reference([], ["a", "b"], mode)
    assert counts_of(run(tmp_path, ["a", "b"], [], mode)) == reference(["a", "b"], [], mode)
    members = tmp_path / "members.csv"
    members.write_bytes(b"")
    impact = compare([], members, mode=mode, workdir=tmp_path / "work")
    assert counts_of(impact) == reference([], [], mode)


def random_keys(rng: random.Random, count: int) -> list[str]:
    alphabet = 'abcAB ,"\\\n\r\u00e9\u3000\t'
    keys = []
    for _ in range(count):
        kind = rng.random()
        if kind < 0.6:
            keys.append(f"user-{rng.randrange(count * 2)}")
        elif kind < 0.7:
            keys.append(rng.choice(BLANKS))
        else:
            keys.append("".join(rng.choice(alphabet) for _ in range(rng.randrange(1, 6))))
    return keys


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("mode", ["merge", "replace", "remove"])
def test_random_sets_match_the_reference(tmp_path: Path, many_buckets: None, seed: int, mode: str) -> None:
    rng = random.Random(seed)
    members = random_keys(rng, 400)
    imports = [
        key for key in random_keys(rng, 300) if "\n" not in key and "\r" not in key
    ]  # validation refuses those
    imports += rng.sample(members, 150)  # overlap, and duplicates on both sides
    imports = [key.strip() for key in imports]  # as validation sends them
    parts = [
        write_keys(tmp_path / "part-001.csv", imports[:200]),
        write_keys(tmp_path / "part-002.csv", imports[200:]),
    ]
    member_file = write_keys(tmp_path / "members.csv", members, crlf=seed % 2 == 1, bom=seed % 3 == 0)
    impact = compare(parts, member_file, mode=mode, samples=4, workdir=tmp_path)
    assert counts_of(impact) == reference(imports, members, mode)
    ours = {key for key in imports if key.strip()}
    theirs = {key for key in members if key.strip()}
    category_sets = {
        "add": ours - theirs,
        "not_members": ours - theirs,
        "unchanged": ours & theirs,
        "remove": (theirs - ours) if mode == "replace" else (ours & theirs),
    }
    assert set(impact.samples) == set(compare_module.CATEGORIES[mode])
    for category, keys in impact.samples.items():
        assert len(keys) == min(4, len(category_sets[category])), category
        assert len(set(keys)) == len(keys)
        assert set(keys) <= category_sets[category], category


def test_odd_keys_are_compared_exactly_across_many_buckets(tmp_path: Path, many_buckets: None) -> None:
    members = ODD_KEYS + BLANKS
    imports = [key for key in ODD_KEYS[::2] if "\n" not in key and "\r" not in key] + ["new"]
    impact = run(tmp_path, imports, members, "replace", samples=100)
    assert counts_of(impact) == reference(imports, members, "replace")
    assert set(impact.samples["remove"]) == set(ODD_KEYS) - set(imports)


def test_progress_reaches_the_total_and_temporary_files_go(tmp_path: Path, many_buckets: None) -> None:
    calls: list[tuple[int, int]] = []
    rows = [f"key-{number}" for number in range(500)]
    impact = run(
        tmp_path, rows[:300], rows[200:], "merge", progress=lambda done, total: calls.append((done, total))
    )
    assert impact.unchanged == 100
    assert len(calls) > 5
    assert [done for done, _ in calls] == sorted(done for done, _ in calls)
    assert calls[-1][0] == calls[-1][1]
    assert list((tmp_path / "work").iterdir()) == []


def test_unknown_mode_and_broken_member_csv(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown import mode"):
        run(tmp_path, ["a"], ["a"], "upsert")
    members = tmp_path / "members.csv"
    members.write_bytes(b'a\n"b\nc"x"\n' + b"z" * 10 + b'"' + b"y" * 200_000 + b"\n")
    with pytest.raises(CompareError, match="not valid CSV"):
        compare([write_keys(tmp_path / "p.csv", ["a"])], members, mode="merge", workdir=tmp_path)


MEMORY_CHILD = textwrap.dedent(
    """
    import importlib.util, resource, sys
    from pathlib import Path
    spec = importlib.util.spec_from_file_location("compare_in_child", sys.argv[3])
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    work = Path(sys.argv[1])
    idle = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    impact = module.compare(
        sorted(work.glob("part-*.csv")), work / "members.csv", mode="replace", workdir=work
    )
    grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - idle) / 1024
    print(impact.add, impact.remove, impact.unchanged, grown)
    """
)


@pytest.mark.slow
def test_one_million_by_one_million_keeps_memory_flat(tmp_path: Path) -> None:
    """In a fresh process (ru_maxrss is per process), 1M import keys against 1M members, half shared,
    adds less than 64 MB to the peak RSS: a set of 1M keys alone would take about 100 MB."""
    count = 1_000_000
    with (tmp_path / "part-001.csv").open("w") as part:
        part.writelines(f"user-{number:08d}\n" for number in range(count))
    with (tmp_path / "members.csv").open("w") as members:
        members.writelines(f"user-{number:08d}\n" for number in range(count // 2, count + count // 2))
    module_path = Path(compare_module.__file__)
    done = subprocess.run(
        [sys.executable, "-c", MEMORY_CHILD, str(tmp_path), "", str(module_path)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    add, remove, unchanged, grown = done.stdout.split()
    assert (int(add), int(remove), int(unchanged)) == (count // 2, count // 2, count // 2)
    assert float(grown) < 64, f"peak RSS grew by {grown} MB"


def test_a_member_file_without_line_ends_is_refused_before_it_fills_memory(
    tmp_path: Path, many_buckets: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(compare_module, "MAX_LINE_BYTES", 4096)
    members = tmp_path / "members.csv"
    members.write_bytes(b"k" * 10_000)
    with pytest.raises(CompareError, match="over 4,096 bytes"):
        compare([write_keys(tmp_path / "p.csv", ["a"])], members, mode="merge", workdir=tmp_path)
    members.write_bytes(b"k" * 4000)  # one key, no line end: fine
    assert (
        compare([write_keys(tmp_path / "p.csv", ["a"])], members, mode="merge", workdir=tmp_path).members == 1
    )
