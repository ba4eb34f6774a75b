"""ExecuTorch `.pte` (PT2E INT8 + XNNPACK) next to ONNX from the same run: size, accuracy, agreement, cosine,
host latency on the ExecuTorch Python runtime and on the torch-free C++ runner, delegated-op share."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from bench.table import Table

TITLE = "ExecuTorch .pte vs ONNX, one `--format onnx,pte` run (x86-64 host)"

MODELS = [("digits CNN", "edgeq.zoo.digits:digits_cnn", "digits"),
          ("token-id encoder", "edgeq.zoo.text:text_encoder", "text")]


def _data(kind: str, folder: Path) -> tuple[Path, Path]:
    if kind == "digits":
        from edgeq.zoo.digits import write_digits_data

        return write_digits_data(folder)
    from edgeq.zoo.text import write_text_data

    return write_text_data(folder)


def _val(art: Any, runner: str) -> Any:
    return next((v for v in art.validations if v.runner == runner), None)


def run(workdir: Path) -> Table:
    import edgeq

    workdir.mkdir(parents=True, exist_ok=True)
    t = Table(["model", "artifact", "bytes", "accuracy", "Δacc (pt)", "top-1 agree", "cos mean",
               "host ms (ORT / ET py)", "C++ runner ms", "delegated ops", "export s"])
    notes = []
    for label, ref, kind in MODELS:
        calib, ev = _data(kind, workdir / f"data-{kind}")
        t0 = time.perf_counter()
        res = edgeq.export(ref, calib=str(calib), eval=str(ev), output=workdir / kind, force=True,
                           formats=("onnx", "pte"), validate_on=("host", "host-cpp"))
        export_s = time.perf_counter() - t0
        for art in res.artifacts:
            if art.role == "auxiliary":
                continue
            host, cpp = _val(art, "host"), _val(art, "host-cpp")
            m = host.metrics if host else {}
            deleg = art.details.get("delegation")
            t.add(label, art.name, art.bytes, m.get("accuracy"), m.get("accuracy_drop_pts"),
                  m.get("top1_agreement"), m.get("cosine_mean"), host.latency_ms if host else None,
                  cpp.latency_ms if cpp else None,
                  f"{deleg['delegated_ops']}/{deleg['total_ops']} ({deleg['delegated_share']:.0%})" if deleg else None,
                  export_s)
        int8 = res.artifact("pte-int8-static")
        v = _val(int8, "host")
        deleg = int8.details["delegation"]
        if kind == "digits":
            ok = v.metrics["accuracy_drop_pts"] <= 0.5 and deleg["delegated_ops"] == deleg["total_ops"]
            notes.append(f"digits CNN INT8 .pte: accuracy drop {v.metrics['accuracy_drop_pts']:.2f} pt, "
                         f"{deleg['delegated_ops']}/{deleg['total_ops']} ops delegated — target (≤ 0.5 pt, all "
                         f"delegated) {'MET' if ok else 'MISSED'}.")
        else:
            left = ", ".join(deleg["non_delegated"])
            notes.append(f"token-id encoder INT8 .pte: mean cosine to float {v.metrics['cosine_mean']:.4f} "
                         f"(min {v.metrics['cosine_min']:.4f}); left to portable kernels: {left}.")
        bundled = res.artifact("pte-bundled").details["bundled"]
        notes.append(f"{label}: .bpte carries {bundled['test_cases']} cases, atol {bundled['atol']:.3g}.")
    t.notes += notes + ["Latency: median single-sample run after warm-up on the shared CI host (not device speed). "
                        "'top-1 agree' is meaningless for the encoder's embedding output."]
    return t
