"""The docs site: `mkdocs build --strict` passes, and the reference pages follow the code they are generated from."""

from __future__ import annotations

import argparse
import importlib.util
import re
from pathlib import Path
from types import ModuleType

import pytest

import edgeq.cli
from edgeq.targets import list_targets

ROOT = Path(__file__).resolve().parents[2]


def gen_docs() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_docs", ROOT / "scripts" / "gen_docs.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _patch_check_help(monkeypatch: pytest.MonkeyPatch, text: str) -> str:
    """Build the real parser, then give `edgeq check --junit` another help text; returns the old one."""
    real = edgeq.cli.build_parser
    old: list[str] = []

    def patched() -> argparse.ArgumentParser:
        p = real()
        sub = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction)).choices["check"]
        action = next(a for a in sub._actions if "--junit" in a.option_strings)
        old.append(str(action.help))
        action.help = text
        return p

    monkeypatch.setattr(edgeq.cli, "build_parser", patched)
    real_help = next(a for a in next(a for a in real()._actions if isinstance(a, argparse._SubParsersAction))
                     .choices["check"]._actions if "--junit" in a.option_strings).help
    return str(real_help)


def test_cli_section_follows_a_changed_help_text(monkeypatch: pytest.MonkeyPatch) -> None:
    g = gen_docs()
    before = g.expand("<!-- gen:cli -->")
    old = _patch_check_help(monkeypatch, "write the verdict as JUnit XML for the docs test 4711")
    after = g.expand("<!-- gen:cli -->")
    assert "docs test 4711" not in before and "docs test 4711" in after
    assert g._cell(old) in before and g._cell(old) not in after


def test_every_command_and_flag_is_on_the_cli_page() -> None:
    text = gen_docs().expand("<!-- gen:cli -->")
    parser = edgeq.cli.build_parser()
    subs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    assert set(subs) == set(re.findall(r"^## `edgeq (\w+)`$", text, re.M))
    for name, sub in subs.items():
        for action in sub._actions:
            for flag in ([] if action.dest == "help" else action.option_strings):
                assert f"`{flag}`" in text, (name, flag)


def test_reference_sections_come_from_the_code() -> None:
    g = gen_docs()
    targets = g.expand("<!-- gen:targets -->")
    assert all(f"`{t}`" in targets for t in list_targets())
    codes = g.expand("<!-- gen:exit-codes -->")
    assert "| `RunnerError` | `EdgeqError` | 3 |" in codes and "| `DataError` | `EdgeqError` | 2 |" in codes
    assert "`schema_version` = 1" in g.expand("<!-- gen:manifest -->")
    with pytest.raises(ValueError, match="unknown generated section 'nope'"):
        g.expand("<!-- gen:nope -->", "x.md")


@pytest.mark.slow
def test_strict_build_renders_the_patched_parser(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The whole site builds with --strict (broken links, unknown nav pages and autorefs fail it) and its CLI page
    is generated at build time: a changed help text shows up in the HTML."""
    pytest.importorskip("mkdocs", reason="mkdocs is in the test extra: pip install -e '.[test]'")
    from mkdocs.commands.build import build
    from mkdocs.config import load_config

    _patch_check_help(monkeypatch, "JUnit help changed by the docs test 4712")
    monkeypatch.chdir(ROOT)
    cfg = load_config(str(ROOT / "mkdocs.yml"), site_dir=str(tmp_path / "site"), strict=True)
    build(cfg)
    html = (tmp_path / "site" / "reference" / "cli" / "index.html").read_text()
    assert "JUnit help changed by the docs test 4712" in html
    assert (tmp_path / "site" / "tutorials" / "ci-gate" / "index.html").is_file()


def test_readme_is_short_and_links_into_the_docs() -> None:
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 200
    links = re.findall(r"\]\((docs/[^)#]+)", readme)
    assert len(links) >= 8
    for link in links:
        assert (ROOT / link).is_file(), link
