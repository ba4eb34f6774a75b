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


def test_generate_cli_streams(tiny_lm_export: Any, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["generate", str(tiny_lm_export.output), "--prompt", "The", "--format", "onnx",
                 "--max-new-tokens", "4"]) == 0
    assert capsys.readouterr().out.startswith("The")


def test_generate_on_a_folder_without_lm(tmp_path: Path) -> None:
    assert main(["generate", str(tmp_path), "--prompt", "x"]) == 2


def test_pte_delegation_choice(tiny_lm: dict[str, Path], tmp_path: Path) -> None:
    """--pte-delegation picks the XNNPACK partitioner of the quantized .pte (float variants always delegate all);
    an unknown value is a usage error before any work."""
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import (
        XnnpackDynamicallyQuantizedPartitioner,
        XnnpackPartitioner,
    )

    from edgeq.errors import UsageError
    from edgeq.llm.api import check_config
    from edgeq.llm.config import LlmConfig, Variant
    from edgeq.llm.pte_delegation import (
        DELEGATION_EXTENDED_OPS,
        delegation_of,
        extended_ops_for,
        partitioners,
    )

    q8 = Variant("pte", 8, 0, activations="dynamic-int8")
    # auto: every op in the custom-SDPA program, only the linears in the static-cache one
    auto = DELEGATION_EXTENDED_OPS["auto"]
    assert extended_ops_for(auto, "custom-sdpa") and not extended_ops_for(auto, "static-cache")
    assert extended_ops_for(DELEGATION_EXTENDED_OPS["all"], "static-cache")
    assert delegation_of(q8, extended_ops_for(DELEGATION_EXTENDED_OPS["linears"], "custom-sdpa")) == "linears"
    assert delegation_of(Variant("pte", 32, 0, embedding_bits=0), False) == "all"
    (linears,) = partitioners(q8, extended_ops=False)
    (every,) = partitioners(q8, extended_ops=True)
    (floats,) = partitioners(Variant("pte", 32, 0, embedding_bits=0), extended_ops=False)
    assert isinstance(linears, XnnpackDynamicallyQuantizedPartitioner)
    assert type(every) is XnnpackPartitioner and type(floats) is XnnpackPartitioner
    with pytest.raises(UsageError, match="delegation"):
        check_config(LlmConfig(model=str(tiny_lm["model"]), output=tmp_path / "o", calib_text=tiny_lm["calib"],
                               pte_delegation="some"))
    with pytest.raises(SystemExit) as exit_info:  # argparse's choices: usage message, exit 2
        main(["-q", "export", str(tiny_lm["model"]), "--calib-text", str(tiny_lm["calib"]),
              "--pte-delegation", "some", "-o", str(tmp_path / "o")])
    assert exit_info.value.code == 2
    assert not (tmp_path / "o").exists()
