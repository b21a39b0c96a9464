"""Every fenced ```bash and ```python block of README.md and docs/*.md, run as written.

- Blocks of one page run in order in one scratch folder, so a later block sees what an earlier one made
  (``runs/shapes`` from the training command, for example). The folder holds links to the repository's
  ``examples/`` and ``i2i/``, and ``../shared`` points at the project's shared data when it is there.
- A block whose fence is directly preceded by the line ``<!-- doctest: skip (reason) -->`` is not run: it is
  reported as a pytest skip with that reason. ```text, ```console and every other language are not run.
- One substitution, through the environment: ``I2I_MAX_ITERS`` (10 here; ``I2I_DOCTEST_MAX_ITERS`` changes it)
  caps every ``i2i cyclegan train`` run, a documented variable the CLI honours, so that the main job's command
  runs unchanged but briefly. Nothing else in a block is changed.
- Commands run offline (``HF_HUB_OFFLINE=1``), with the test run's FreeControl cache (``I2I_CACHE_DIR``, never
  the user's), with this repository first on ``PYTHONPATH`` and the current Python's ``bin/`` first on ``PATH``
  (so ``i2i`` and ``python`` are this environment's).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SKIP_MARK = re.compile(r"^<!--\s*doctest:\s*skip\s*\((?P<reason>.+)\)\s*-->$")
RUN_LANGS = {"bash": "bash", "sh": "bash", "shell": "bash", "python": "python", "py": "python"}
MAX_ITERS = os.environ.get("I2I_DOCTEST_MAX_ITERS", "10")
TIMEOUT_S = 900   # per block; a loaded 2-core machine can be many times slower than an idle one


@dataclass(frozen=True)
class Block:
    page: Path
    line: int             # 1-based line of the opening fence
    lang: str             # "bash" or "python"
    code: str
    skip: str | None      # the reason, when marked

    @property
    def id(self) -> str:
        return f"{self.page.relative_to(REPO)}:{self.line}"


def doc_pages() -> list[Path]:
    """README.md and every docs/*.md page (a new page is picked up by being there)."""
    return [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def extract_blocks(page: Path) -> list[Block]:
    """The runnable fenced blocks of ``page``, in order."""
    lines = page.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        opening = lines[i].strip()
        if not opening.startswith("```"):
            i += 1
            continue
        lang = opening[3:].strip().split(" ")[0].lower()
        end = i + 1
        while end < len(lines) and lines[end].strip() != "```":
            end += 1
        if lang in RUN_LANGS:
            prev = lines[i - 1].strip() if i > 0 else ""
            marked = SKIP_MARK.match(prev)
            indent = len(lines[i]) - len(lines[i].lstrip())
            code = "\n".join(line[indent:] for line in lines[i + 1:end]) + "\n"
            blocks.append(Block(page, i + 1, RUN_LANGS[lang], code, marked.group("reason") if marked else None))
        i = end + 1
    return blocks


def _shared_dir() -> Path | None:
    for candidate in (os.environ.get("I2I_SHARED_DIR"), REPO.parent / "shared", REPO.parent.parent / "shared"):
        if candidate and (Path(candidate) / "data").is_dir():
            return Path(candidate)
    return None


ALL_BLOCKS = [block for page in doc_pages() for block in extract_blocks(page)]
_WORKDIRS: dict[Path, Path] = {}


@pytest.fixture(scope="session")
def scratch(tmp_path_factory):
    def workdir(page: Path) -> Path:
        if page not in _WORKDIRS:
            root = tmp_path_factory.mktemp(page.stem)
            work = root / "repo"
            work.mkdir()
            for name in ("examples", "i2i"):
                (work / name).symlink_to(REPO / name)
            shared = _shared_dir()
            if shared is not None:
                (root / "shared").symlink_to(shared)
            _WORKDIRS[page] = work
        return _WORKDIRS[page]
    return workdir


def _env(cache: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["I2I_CACHE_DIR"] = str(cache)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", I2I_MAX_ITERS=MAX_ITERS, COLUMNS="120")
    return env


def test_the_pages_have_blocks_and_the_marker_is_well_formed():
    assert ALL_BLOCKS, "no runnable blocks found"
    for page in doc_pages():
        for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip().startswith("<!--") and "doctest" in line:
                assert SKIP_MARK.match(line.strip()), f"{page.name}:{number}: malformed marker {line!r}"


@pytest.mark.heavy          # minutes in all: this file goes to a pytest-xdist worker first (tests/conftest.py)
@pytest.mark.parametrize("block", ALL_BLOCKS, ids=[b.id for b in ALL_BLOCKS])
def test_doc_block_runs(block: Block, scratch, demo_cache):
    if block.skip:
        pytest.skip(f"marked in {block.id}: {block.skip}")
    if "../shared" in block.code and _shared_dir() is None:
        pytest.skip("needs the project's shared data beside the repository (../shared/data)")
    work = scratch(block.page)
    if block.lang == "bash":
        cmd = ["bash", "-euo", "pipefail", "-c", block.code]
    else:
        cmd = [sys.executable, "-c", block.code]
    proc = subprocess.run(cmd, cwd=work, env=_env(demo_cache), capture_output=True, text=True, timeout=TIMEOUT_S,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, (f"{block.id} exited {proc.returncode}\n--- code\n{block.code}--- stdout\n"
                                  f"{proc.stdout[-3000:]}\n--- stderr\n{proc.stderr[-3000:]}")


def test_marker_and_extraction(tmp_path):
    """The extractor itself: languages, the skip marker (only on the line just before a fence), indentation."""
    page = tmp_path / "page.md"
    page.write_text("text\n```bash\necho one\n```\n<!-- doctest: skip (needs a GPU) -->\n```python\nx = 1\n```\n"
                    "```text\nnot run\n```\n<!-- doctest: skip (too far) -->\n\n```bash\necho two\n```\n"
                    "- item\n  ```bash\n  echo three\n  ```\n")
    blocks = extract_blocks(page)
    assert [(b.lang, b.code, b.skip) for b in blocks] == [
        ("bash", "echo one\n", None), ("python", "x = 1\n", "needs a GPU"), ("bash", "echo two\n", None),
        ("bash", "echo three\n", None)]
