"""Pure privacy library of the Brand Alliance Exchange: normalisation, hash-to-point and blinding,
PSI messages and counting, disclosure control (k-suppression, DP noise, budgets) and agent keys.

No web, no database, no I/O (except the key-file helpers in :mod:`privacy.keys`). Import the
submodules directly: ``from privacy.blind import hash_and_blind_batch``.
"""

__all__: list[str] = []
