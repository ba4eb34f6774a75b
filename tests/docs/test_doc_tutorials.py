"""The tutorials run end to end: every ```bash block of a page, in order, in one bash process in an empty folder.

A command that is wrong in a page fails here. ```console blocks (device-side, or machines CI lacks) are not run,
but each of their `edgeq ...` commands must parse with edgeq's own argument parser. Small models stand in where
a page's default is large (the LLM page's MODEL), through the variable the page documents.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from edgeq.cli import parse_args

ROOT = Path(__file__).resolve().parents[2]
TUTORIALS = ROOT / "docs" / "tutorials"
FENCE = re.compile(r"^```(\w+)\n(.*?)^```\s*$", re.M | re.S)


def blocks(page: Path, lang: str) -> list[str]:
    return [body for kind, body in FENCE.findall(page.read_text()) if kind == lang]


def run_page(page: Path, workdir: Path, env: dict[str, str] | None = None, timeout: int = 900) -> str:
    script = "set -euo pipefail\n" + "\n".join(blocks(page, "bash"))
    full_env = {k: v for k, v in os.environ.items() if k != "MODEL"}  # a page's default unless the test sets it
    full_env.update({"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
                     "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", **(env or {})})
    r = subprocess.run(["bash", "-c", script], cwd=workdir, env=full_env, capture_output=True, text=True,
                       timeout=timeout)
    assert r.returncode == 0, f"{page.name} failed (exit {r.returncode}):\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}"
    return r.stdout


def _edgeq_argvs(line: str) -> list[list[str]]:
    """`edgeq ...` commands in one shell line, also inside a quoted remote command (ssh host 'a && edgeq b')."""
    lex = shlex.shlex(line, posix=True, punctuation_chars=True)
    lex.whitespace_split = True
    out: list[list[str]] = []
    cmd: list[str] = []
    for tok in [*lex, ";"]:
        if tok in (";", "&&", "||", "|"):
            if cmd[:1] == ["edgeq"]:
                out.append(cmd[1:])
            cmd = []
        elif " " in tok:
            out += _edgeq_argvs(tok)
        else:
            cmd.append(tok)
    return out


def console_edgeq_commands(page: Path) -> list[list[str]]:
    return [argv for body in blocks(page, "console") for line in body.splitlines() for argv in _edgeq_argvs(line)]


def test_every_tutorial_has_bash_blocks() -> None:
    pages = [p for p in TUTORIALS.glob("*.md") if p.name != "index.md"]
    assert len(pages) == 4
    for p in pages:
        assert blocks(p, "bash"), p.name


@pytest.mark.parametrize("page", sorted(p.name for p in TUTORIALS.glob("*.md") if p.name != "index.md"))
def test_console_edgeq_commands_parse(page: str) -> None:
    for argv in console_edgeq_commands(TUTORIALS / page):
        ns = parse_args([a.replace("$MODEL", "pkg.mod:build") for a in argv])  # SystemExit on an unknown flag
        assert ns.command == argv[0], argv  # the page's subcommand is the one the parser dispatches to


def test_a_wrong_command_in_a_page_fails(tmp_path: Path) -> None:
    page = tmp_path / "broken.md"
    page.write_text("# x\n\n```bash\nedgeq targets\n```\n\n```bash\nedgeq export --no-such-flag\n```\n")
    with pytest.raises(AssertionError, match="broken.md failed"):
        run_page(page, tmp_path)


@pytest.mark.slow
def test_ci_gate_tutorial(tmp_path: Path) -> None:
    out = run_page(TUTORIALS / "ci-gate.md", tmp_path)
    assert "exit code: 1" in out
    assert (tmp_path / "reports" / "edgeq.xml").is_file() and (tmp_path / "artifacts" / "edgeq.json.sig").is_file()
    assert "1 passed" in out  # the pytest plugin's one test per folder


@pytest.mark.slow
def test_android_image_classifier_tutorial(tmp_path: Path) -> None:
    out = run_page(TUTORIALS / "android-image-classifier.md", tmp_path)
    assert "verdict: PASS" in out
    for name in ("model.int8.onnx", "model.int8.ort", "model.int8.pte", "model.fp16.onnx"):
        assert (tmp_path / "out" / name).is_file(), name
    assert "[1, 1, 8, 8]" in out  # the shipped INT8 model's fixed batch, as the app reads it


@pytest.mark.slow
def test_ios_sentence_encoder_tutorial(tmp_path: Path) -> None:
    out = run_page(TUTORIALS / "ios-sentence-encoder.md", tmp_path)
    assert "verdict: PASS" in out
    assert (tmp_path / "out" / "model.fp16.onnx").is_file() and "CoreML" in out


def _tiny_llama(folder: Path) -> Path:
    spec = importlib.util.spec_from_file_location("llm_fixtures", ROOT / "tests" / "llm" / "conftest.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = Path(mod.tiny_llama_folder(folder))
    # The page exports with the default --max-context (512); the fixture's config says 256 positions. RoPE has no
    # learned positions, so the random model takes 512 as well: only the config changes.
    cfg = json.loads((out / "config.json").read_text())
    cfg["max_position_embeddings"] = 512
    (out / "config.json").write_text(json.dumps(cfg))
    return out


@pytest.mark.slow
def test_raspberry_pi_llm_tutorial(tmp_path: Path) -> None:
    model = _tiny_llama(tmp_path / "tiny-llama")
    work = tmp_path / "work"
    work.mkdir()
    run_page(TUTORIALS / "raspberry-pi-llm.md", work, env={"MODEL": str(model)})
    assert (work / "lm" / "edgeq.json").is_file() and (work / "lm" / "edgeq_generate.py").is_file()
