"""The one selection engine: every loop that chooses what ships (the ONNX and ``.pte`` searches, ``edgeq sweep``,
the compression sweep, the LLM ladder) measures candidates into :class:`~edgeq.select.rule.Scored` rows and asks
this package which one ships, which came closest, which are Pareto-optimal and what to say about it.

- :mod:`edgeq.select.rule`: the pick rule, ``closest``, the Pareto front, the shortfall to a budget;
- :mod:`edgeq.select.evaluation`: the one evaluator interface — a candidate scored against its budget, on tensor
  metrics (:func:`~edgeq.select.evaluation.evaluate_tensor`) or perplexity
  (:func:`~edgeq.select.evaluation.evaluate_perplexity`);
- :mod:`edgeq.select.verdict`: the one verdict function, ``{"passed", "failures"}`` for every export and check;
- :mod:`edgeq.select.ladder`: the ladder strategy — stages of moves, least protected first, budgeted in trials;
- :mod:`edgeq.select.summary`: the one summary line, which names what shipped.
"""
