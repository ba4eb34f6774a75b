"""``edgeq export --task text-generation`` and ``edgeq generate`` from the command line: detection and errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from edgeq.cli import main
from edgeq.llm.source import looks_like_lm


def test_causal_lm_folder_is_detected(tiny_lm: dict[str, Path], tmp_path: Path) -> None:
    assert looks_like_lm(str(tiny_lm["model"]))
    (tmp_path / "config.json").write_text('{"architectures": ["BertModel"]}')
    assert not looks_like_lm(str(tmp_path))
    assert looks_like_lm("x/model.gguf")


def test_missing_calib_text_is_a_usage_error(tiny_lm: dict[str, Path], tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-q", "export", str(tiny_lm["model"]), "-o", str(tmp_path / "o")]) == 2
    assert "--calib-text" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_bad_seq_len_and_existing_output(tiny_lm: dict[str, Path], tmp_path: Path) -> None:
    base = ["-q", "export", str(tiny_lm["model"]), "--calib-text", str(tiny_lm["calib"])]
    assert main([*base, "--seq-len", "600", "-o", str(tmp_path / "o")]) == 2
    (tmp_path / "exists").mkdir()
    assert main([*base, "-o", str(tmp_path / "exists")]) == 2


def test_generate_cli_streams(tiny_export: Any, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["generate", str(tiny_export.output), "--prompt", "The", "--format", "onnx",
                 "--max-new-tokens", "4"]) == 0
    assert capsys.readouterr().out.startswith("The")


def test_generate_on_a_folder_without_lm(tmp_path: Path) -> None:
    assert main(["generate", str(tmp_path), "--prompt", "x"]) == 2
