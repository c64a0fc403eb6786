"""Synthetic training data made by teacher *roles* (prompt template + output parser + validator).

* ``roles.py`` -- the role registry (Orca-Math's Suggester, Editor, Solver; MediFlow-style instruction
  writer, responder, judge).
* ``orca_math.py`` -- seed problems -> N rounds of Suggester -> Editor -> Solver, kept when verified
  (Mitra et al. 2024, arXiv 2402.14830).
* ``mediflow.py`` -- task x document type x output format instructions with JSON answers checked against
  a JSON schema, bounded retry (MediPhi, Corbeil et al. 2025, arXiv 2505.10717).
* ``engine.py`` -- concurrency and batching over any backend, on-disk answer cache, resumable journal.
* ``filters.py`` / ``sources.py`` -- length, exact/near-duplicate and n-gram contamination filters, and
  the evaluation sets they protect.
* ``rule_teacher.py`` + ``math_story.py`` -- the ``rule_math`` backend: a rule-based teacher that really
  reads, edits and solves problems of the built-in math task (labelled rule-based in every row).
* ``stage.py`` -- the ``synth`` stage.
"""
