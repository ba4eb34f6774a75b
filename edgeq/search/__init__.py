"""Accuracy-aware quantization: fragile-pattern detection, per-node sensitivity, budget-driven search, sweep.

- :mod:`edgeq.search.patterns`    — structural detection of fragile transformer subgraphs (ONNX)
- :mod:`edgeq.search.sensitivity` — per-node ranking with ORT's ``qdq_loss_debug`` (ONNX)
- :mod:`edgeq.search.pte_sensitivity` — per-node ranking of the PT2E graph (``.pte`` path)
- :mod:`edgeq.search.search`      — the budget-driven trial ladder (ONNX static INT8); :mod:`edgeq.search.evaluate`
  measures one trial
- :mod:`edgeq.search.integrate`, :mod:`edgeq.search.integrate_pte` — how ``edgeq export`` runs the ONNX and
  ``.pte`` searches; :mod:`edgeq.sweep` — ``edgeq sweep``
- :mod:`edgeq.search.report`, :mod:`edgeq.search.svg` — HTML report sections and charts
"""
