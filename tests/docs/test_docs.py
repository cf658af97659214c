"""The documentation site builds, and what the pages claim about the code stays true.

`mkdocs build --strict` fails on a broken link, a missing anchor, a page left out of the nav and
an API reference object that cannot be found. The other tests check the claims a build cannot:
that the tests and functions the pages cite exist, that the quickstart shows the README's exact
commands, and that troubleshooting answers every failure the docs promise to answer.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.glob("*.md"))

# The failures troubleshooting.md must answer (issue 9), each in its own section.
TROUBLESHOOTING_SECTIONS = (
    "Out of memory on a 16 GB GPU",
    "Pad token equal to EOS: the model never stops",
    "fp16 NaN losses on GPUs without bf16",
    "bitsandbytes install problems",
    "QLoRA slower than expected",
    "Response masking broken by packing",
    "Resume that restarts from scratch",
    "Quality lost when merging into a 4-bit base",
    "Chat template lost on export",
)
SECTION_PARTS = ("**Symptom.**", "**Cause.**", "**What llama_lora does.**", "**What you do.**")

# `tests/a/test_b.py::test_c`, or `::test_d` continuing the file named last.
TEST_REFERENCE = re.compile(r"`(tests/[\w/]+\.py)?(?:::(\w+))?`")
# "`name` in `llama_lora/path.py`": a function or class the page says lives in that module.
CODE_REFERENCE = re.compile(r"`(\w+)`\s+in\s+`(llama_lora/[\w/]+\.py)`")


def _nav_files(nav) -> list[str]:
    files = []
    for entry in nav:
        value = next(iter(entry.values())) if isinstance(entry, dict) else entry
        files += _nav_files(value) if isinstance(value, list) else [value]
    return files


def _sections(text: str) -> dict[str, str]:
    """``{level-2 heading: body}`` of a markdown page."""
    parts = re.split(r"^## (.+)$", text, flags=re.MULTILINE)
    return {title.strip(): body for title, body in zip(parts[1::2], parts[2::2], strict=True)}


@pytest.mark.slow
def test_mkdocs_build_strict(tmp_path) -> None:
    for module in ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers"):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} is not installed (pip install -e '.[docs]')")
    site = tmp_path / "site"
    completed = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},  # silence Material's banner
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-5000:]
    api = (site / "api" / "index.html").read_text(encoding="utf-8")
    for name in ("prepare_model", "build_dataset", "Finetuner", "TrainingConfig", "evaluate"):
        assert f'id="llama_lora.{name}"' in api, f"API reference lacks {name}"


def test_every_page_is_in_the_nav_and_every_nav_entry_exists() -> None:
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    nav = _nav_files(config["nav"])
    assert sorted(nav) == sorted(p.name for p in PAGES)
    assert len(nav) == len(set(nav)), "a page appears twice in the nav"


def test_quickstart_shows_the_readme_commands_exactly() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = _sections(readme)["Two commands"]
    commands = re.findall(r"```bash\n(.+?)\n```", section, flags=re.DOTALL)
    assert len(commands) == 2, "the README's Two commands section should hold two bash blocks"
    quickstart = (DOCS / "quickstart.md").read_text(encoding="utf-8")
    for command in commands:
        assert f"```bash\n{command}\n```" in quickstart, command


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_cited_tests_exist(page: Path) -> None:
    current = None
    for match in TEST_REFERENCE.finditer(page.read_text(encoding="utf-8")):
        file, name = match.groups()
        if file is None and name is None:
            continue
        if file is not None:
            current = ROOT / file
            assert current.is_file(), f"{page.name} cites missing {file}"
        assert current is not None, f"{page.name}: `::{name}` before any test file"
        if name is not None:
            source = current.read_text(encoding="utf-8")
            assert re.search(rf"^def {name}\(", source, re.MULTILINE), (
                f"{page.name} cites {current.relative_to(ROOT)}::{name}, which does not exist"
            )


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_cited_functions_live_where_the_page_says(page: Path) -> None:
    for name, module in CODE_REFERENCE.findall(page.read_text(encoding="utf-8")):
        path = ROOT / module
        assert path.is_file(), f"{page.name} cites missing {module}"
        source = path.read_text(encoding="utf-8")
        assert re.search(rf"^(def|class) {name}\b", source, re.MULTILINE), (
            f"{page.name}: {name} is not defined in {module}"
        )


@pytest.mark.parametrize("title", TROUBLESHOOTING_SECTIONS)
def test_troubleshooting_answers_each_failure(title: str) -> None:
    sections = _sections((DOCS / "troubleshooting.md").read_text(encoding="utf-8"))
    assert title in sections, f"no section {title!r}; sections are {list(sections)}"
    body = sections[title]
    positions = [body.find(part) for part in SECTION_PARTS]
    assert all(p >= 0 for p in positions), f"{title}: needs {SECTION_PARTS}"
    assert positions == sorted(positions), f"{title}: parts out of order"
    does = body[positions[2] : positions[3]]
    assert TEST_REFERENCE.search(does) or CODE_REFERENCE.search(does), (
        f"{title}: 'What llama_lora does' names no test or function backing it"
    )
