"""One-off studies: probes and diagnoses that answered a question once, with their results.

Unlike the benchmarks one level up, nothing in the product's defaults rests on
re-running them; each keeps its command (``python -m benchmarks.studies.NAME``)
and writes under ``benchmarks/studies/results``.
"""
