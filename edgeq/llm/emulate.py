"""Decode speed of a shipped LM artifact on an emulated ARM CPU (qemu-user, the target's ``-cpu`` model).

``.onnx``: ``validate/device/lm_decode_onnx.py`` under the emulated python with the aarch64 onnxruntime wheel —
prefill a prompt, then greedy decode through the KV cache, exactly as on the host.
``.pte``: edgeq's C++ runner cross-built against the aarch64 ExecuTorch runtime, with ExecuTorch's ``llama::``
custom-op kernels compiled in (so both the custom-SDPA and the static-cache program load). It runs its input rows in
order, so rows ``tokens[i] = [[prompt[i]]], input_pos[i] = [i]`` feed the prompt one token at a time through the
program's KV cache (the logits come back for a check against the host); its timed repeats are single-token decode
steps, re-run at the first row's position. With the static cache a step attends over the whole cache (masked), so
its cost does not depend on the position. With the custom SDPA a step attends over the filled positions only, so
the position-0 step leaves out the attention's growth with the context; at the short contexts emulated here the
linears dominate a step either way.

Everything here is qemu's instruction-level time on this host: reported as ``emulated``, never as device speed."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgeq.emulator import qemu
from edgeq.errors import EmulatorError
from edgeq.executorch.cpp_runner import LLAMA_OPS
from edgeq.jsontypes import JSONObject
from edgeq.llm.pte_export import custom_ops
from edgeq.targets import load_target
from edgeq.validate.runners.base import parse_result
from edgeq.validate.runners.emulator import DEVICE_DIR, EmulatorRunner

DECODE_TOKENS = 8  # few: every emulated step is slow and the figure is not device speed anyway
_DECODE_KIND = {"static-cache": "single-token step through the static KV cache (median of 5)",
                "custom-sdpa": "single-token step at position 0 through ExecuTorch's custom SDPA and KV cache "
                               "(median of 5)"}


def emulated_speed(artifact: Path, fmt: str, target_name: str, prompt: np.ndarray, workdir: Path,
                   decode_tokens: int = DECODE_TOKENS) -> JSONObject:
    """{runner, cpu_model, metrics{decode_tokens_per_s, decode_ms_per_token, ...}, runtime, emulated: True}."""
    target = load_target(target_name)
    runner = EmulatorRunner(target)  # typed errors: a non-ARM target, the emulator not set up
    workdir.mkdir(parents=True, exist_ok=True)
    if fmt == "onnx":
        metrics, runtime = _onnx(runner, artifact, prompt, decode_tokens)
    elif fmt == "pte":
        metrics, runtime = _pte(runner, artifact, prompt, workdir)
    else:
        raise EmulatorError(f"no emulated LM decode for format {fmt!r}", "formats: onnx, pte")
    return {**runner.describe(), "target": target.name, "metrics": metrics, "runtime": runtime,
            "latency_ms": metrics["decode_ms_per_token"], "latency_kind": "emulated"}


def unsupported_ops(called: list[str]) -> list[str]:
    """The ``llama::`` operators a ``.pte`` calls (CALLED: ``edgeq.llm.pte_export.custom_ops``) that the C++ runner
    has no kernel for (empty: it loads)."""
    return [op for op in called if op not in LLAMA_OPS]


def _onnx(runner: EmulatorRunner, folder: Path, prompt: np.ndarray, decode_tokens: int) -> tuple[JSONObject, str]:
    args = [str(DEVICE_DIR / "lm_decode_onnx.py"), str(folder), ",".join(str(int(t)) for t in prompt),
            "--decode-tokens", str(decode_tokens)]
    r = qemu.run_python(runner.env, runner.target, args, timeout=runner.timeout, check=False)
    where = f"lm_decode_onnx.py under qemu -cpu {runner.cpu_model}"
    if r.returncode != 0:
        tail = " | ".join((r.stderr or "").strip().splitlines()[-6:])
        raise EmulatorError(f"{where} failed (exit {r.returncode}): {tail}", "the program's stderr is above")
    info = parse_result(r.stdout, where, EmulatorError)
    metrics: JSONObject = {k: info[k] for k in ("prefill_tokens_per_s", "decode_tokens_per_s", "decode_ms_per_token",
                                    "decode_tokens")}
    metrics["generated"] = info["generated"]
    return metrics, f"{info.get('runtime', 'onnxruntime')} aarch64 (qemu {runner.cpu_model})"


def _pte(runner: EmulatorRunner, pte: Path, prompt: np.ndarray, workdir: Path) -> tuple[JSONObject, str]:
    called = custom_ops(pte)
    if ops := unsupported_ops(called):
        raise EmulatorError(f"{pte.name} calls {', '.join(ops)}, which edgeq's C++ runner (the emulated one) has no "
                            f"kernels for: it compiles in ExecuTorch's {', '.join(LLAMA_OPS)}",
                            "export the .pte with --pte-program static-cache to measure it on the emulator")
    inputs = workdir / f"{pte.stem}.lm_steps.npz"
    ids = np.asarray(prompt, dtype=np.int64)
    # key order = the program's input order (tokens, input_pos); one row per decode step
    np.savez(inputs, tokens=ids.reshape(-1, 1), input_pos=np.arange(len(ids), dtype=np.int64))
    res = runner.run(pte, "pte", inputs, workdir)
    if res.latency_ms is None:
        raise EmulatorError(f"the emulated C++ runner reported no latency for {pte.name}")
    logits = next(iter(res.outputs.values()))
    metrics: JSONObject = {"decode_tokens_per_s": round(1000.0 / res.latency_ms, 2), "decode_ms_per_token": round(res.latency_ms, 3),
               "decode_kind": _DECODE_KIND["custom-sdpa" if called else "static-cache"],
               "stepwise_argmax": logits.reshape(len(ids), -1).argmax(-1).tolist()}
    return metrics, res.runtime
