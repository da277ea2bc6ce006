"""scaling: train families of decoder-only language models and fit their scaling laws.

Data flows through the package in the order of its modules:
``sweep`` (experiments -> cells) -> ``launch`` (cells -> backends) -> ``train`` (one cell ->
run directory) -> ``results`` (run directories -> table) -> ``analysis`` (table -> fits).
``config`` holds the frozen dataclasses they share and ``accounting`` the only parameter and
FLOP formulas.
"""

__version__ = "0.1.0"
