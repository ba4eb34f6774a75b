"""The Raspberry Pi text-generation app (numpy + onnxruntime): on the host, and on aarch64 under the emulator, whose
sysroot has no ``tokenizers`` (prompt as token ids, text decoded from tokenizer.json by the app itself). Its greedy
tokens must equal the host's greedy tokens through edgeq's own ONNX runner."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgeq.llm.metrics import greedy
from edgeq.llm.runners import OnnxLM
from edgeq.resources import sample_app_dir

APP = sample_app_dir("raspberry_pi_python") / "edgeq_generate.py"
PROMPT = "The for statement"
NEW = 12


def run_app(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(APP), *args], capture_output=True, text=True, timeout=300)


def host_greedy(out: Path) -> tuple[list[int], list[int], str]:
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(out / "tokenizer" / "tokenizer.json"))
    ids = tok.encode(PROMPT).ids
    m = json.loads((out / "edgeq.json").read_text())
    pick = next(a for a in m["artifacts"] if a["format"] == "onnx" and a["details"]["pick"])
    got = greedy(OnnxLM(out / pick["details"]["folder"]), np.array(ids), NEW).tolist()
    return ids, got, tok.decode(got)


def _ids(stdout: str) -> list[int]:
    line = next(ln for ln in stdout.splitlines() if ln.startswith("ids:"))
    return [int(x) for x in line[4:].split(",")]


def test_app_on_the_host_matches_greedy_and_decodes(peaked: dict[str, Path]) -> None:
    ids, want, text = host_greedy(peaked["out"])
    r = run_app(str(peaked["out"]), "--prompt", PROMPT, "--max-new-tokens", str(NEW), "--print-ids", "--ignore-eos")
    assert r.returncode == 0, r.stderr
    assert _ids(r.stdout) == want
    assert r.stdout.splitlines()[-1] == text  # the app's own vocabulary decoding == the tokenizers library's
    r = run_app(str(peaked["out"]), "--prompt-ids", ",".join(map(str, ids)), "--max-new-tokens", str(NEW),
                "--print-ids", "--ignore-eos")
    assert r.returncode == 0 and _ids(r.stdout) == want


def test_app_refuses_tampered_and_failed_exports(peaked: dict[str, Path], tmp_path: Path) -> None:
    bad = tmp_path / "tampered"
    shutil.copytree(peaked["out"], bad)
    with open(next(bad.glob("onnx/*/model.onnx.data")), "ab") as f:
        f.write(b"\0")
    r = run_app(str(bad), "--prompt-ids", "5,6")
    assert r.returncode == 2 and "does not match edgeq.json" in r.stderr
    failed = tmp_path / "failed"
    shutil.copytree(peaked["out"], failed)
    m = json.loads((failed / "edgeq.json").read_text())
    m["verdict"] = {"passed": False, "failures": ["onnx: no variant inside x1.100 float perplexity"]}
    (failed / "edgeq.json").write_text(json.dumps(m))
    r = run_app(str(failed), "--prompt-ids", "5,6")
    assert r.returncode == 1 and "FAILED" in r.stderr
    assert run_app(str(failed), "--prompt-ids", "5,6", "--allow-failed").returncode == 0


@pytest.mark.emulator
@pytest.mark.slow
def test_app_under_the_arm_emulator_matches_host_greedy(peaked: dict[str, Path], emulator_env) -> None:  # type: ignore[no-untyped-def]
    from edgeq.emulator import qemu
    from edgeq.targets import load_target

    ids, want, text = host_greedy(peaked["out"])
    r = qemu.run_python(emulator_env, load_target("raspberry-pi-4"),
                        [str(APP), str(peaked["out"]), "--prompt-ids", ",".join(map(str, ids)),
                         "--max-new-tokens", str(NEW), "--print-ids", "--ignore-eos", "--threads", "1"],
                        check=False)
    assert r.returncode == 0, r.stderr[-2000:]
    assert _ids(r.stdout) == want
    assert r.stdout.splitlines()[-1] == text
