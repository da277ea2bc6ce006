"""Published scaling laws, model points, tables and data sets, for side-by-side comparison.

Constants are kept exactly as published.  Chinchilla's Approach 3 exists twice: the
*rounded* numbers printed in the paper (E 1.69, A 406.4, B 410.7, alpha 0.34, beta 0.28)
and the *unrounded* ones from the paper's source (log A 6.0073404, log B 6.0179186,
log E 0.5267228, alpha 0.33917084, beta 0.2849083).  They imply different frontiers
(a = 0.4516 vs 0.4565) because the frontier depends on the ratio of exponents; the two are
separate presets and neither ever stands in for the other.

:func:`chinchilla_vs_gopher` answers the paper's headline question at Gopher's budget
(5.76e23 FLOPs) under any preset or fit, with bootstrap intervals when samples are given.

:func:`load` returns the published data sets shipped inside the package
(``analysis/reference_data/``), each checked against the sha256 of its provenance row
(:func:`provenance`: source repository, path, commit, how it was copied).  This module
imports only numpy at module level; pandas is imported when a table is first used.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import math
from pathlib import Path

import numpy as np

from analysis.errors import ConfigError
from analysis.laws import LawParams

GOPHER_FLOPS = 5.76e23
PF_DAY = 8.64e19


@dataclasses.dataclass(frozen=True)
class Preset:
    """A published L(N, D) = E + A/N^alpha + B/D^beta."""

    name: str
    law: LawParams
    source: str


def _from_logs(logA, logB, logE, alpha, beta) -> LawParams:
    return LawParams(E=math.exp(logE), A=math.exp(logA), B=math.exp(logB), alpha=alpha, beta=beta)


# Hoffmann et al. 2022 eq. (10) as printed: the law sweep planners centre grids on.
CHINCHILLA_ROUNDED = LawParams(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28)

PRESETS: dict[str, Preset] = {
    "chinchilla_rounded": Preset(
        "chinchilla_rounded", CHINCHILLA_ROUNDED, "Hoffmann et al. 2022, eq. (10), as printed"),
    "chinchilla_unrounded": Preset(
        "chinchilla_unrounded", _from_logs(6.0073404, 6.0179186, 0.5267228, 0.33917084, 0.2849083),
        "Hoffmann et al. 2022, unrounded values from the paper's source"),
    "epoch2024": Preset(
        "epoch2024", LawParams(E=1.8169, A=482.01, B=2085.43, alpha=0.3478, beta=0.3658),
        "Besiroglu et al. 2024 (Epoch AI), Chinchilla scaling: a replication attempt"),
}

# Unrounded logs kept verbatim (the LawParams above hold their exponentials).
CHINCHILLA_UNROUNDED_LOGS = {"logA": 6.0073404, "logB": 6.0179186, "logE": 0.5267228,
                             "alpha": 0.33917084, "beta": 0.2849083}


@dataclasses.dataclass(frozen=True)
class Kaplan2020:
    """Kaplan et al. 2020: L(N, D) = [(Nc/N)^(aN/aD) + Dc/D]^aD (non-embedding N, nats)
    and the compute-efficient size N_opt = 1.3e9 (C / PF-day)^0.73 (their Section 6)."""

    Nc: float = 8.8e13
    Dc: float = 5.4e13
    alpha_N: float = 0.076
    alpha_D: float = 0.095
    n_coef: float = 1.3e9
    a: float = 0.73
    b: float = 0.27

    def loss(self, N, D):
        from analysis.laws import KAPLAN

        theta = [math.log(self.Nc), math.log(self.Dc), self.alpha_N, self.alpha_D]
        return KAPLAN.predict(theta, N=np.asarray(N, dtype=np.float64), D=np.asarray(D, dtype=np.float64))

    def n_opt(self, C):
        return self.n_coef * (np.asarray(C, dtype=np.float64) / PF_DAY) ** self.a

    def d_opt(self, C):
        return np.asarray(C, dtype=np.float64) / (6.0 * self.n_opt(C))


KAPLAN2020 = Kaplan2020()

# Model points (parameters, training tokens).
MODELS = {
    "Gopher": (280e9, 300e9),
    "Chinchilla": (70e9, 1.4e12),
    "GPT-3": (175e9, 300e9),
    "MT-NLG": (530e9, 270e9),
}

# Chinchilla Table 3 (Approach 1 projections): params, FLOPs, FLOPs in Gopher units, tokens.
_TABLE3_ROWS = (
    [(400e6, 1.92e19, 1 / 29968, 8.0e9), (1e9, 1.21e20, 1 / 4761, 20.2e9),
     (10e9, 1.23e22, 1 / 46, 205.1e9), (67e9, 5.76e23, 1.0, 1.5e12),
     (175e9, 3.85e24, 6.7, 3.7e12), (280e9, 9.90e24, 17.2, 5.9e12),
     (520e9, 3.43e25, 59.5, 11.0e12), (1e12, 1.27e26, 221.3, 21.2e12),
     (10e12, 1.30e28, 22515.9, 216.2e12)],
    ["params", "flops", "flops_gopher_units", "tokens"])

# Chinchilla Table A3 (Approaches 2 and 3), as printed.  Note: the printed Approach 3 FLOPs
# for 175B (1.26e24) is inconsistent with its own tokens (6 N D = 1.26e25); kept as printed.
_TABLE_A3_ROWS = (
    [(400e6, 1.84e19, 7.7e9, 2.21e19, 9.2e9), (1e9, 1.20e20, 20.0e9, 1.62e20, 27.1e9),
     (10e9, 1.32e22, 219.5e9, 2.46e22, 410.1e9), (67e9, 6.88e23, 1.7e12, 1.71e24, 4.1e12),
     (175e9, 4.54e24, 4.3e12, 1.26e24, 12.0e12), (280e9, 1.18e25, 7.1e12, 3.52e25, 20.1e12),
     (520e9, 4.19e25, 13.4e12, 1.36e26, 43.5e12), (1e12, 1.59e26, 26.5e12, 5.65e26, 94.1e12),
     (10e12, 1.75e28, 292.0e12, 8.55e28, 1425.5e12)],
    ["params", "approach2_flops", "approach2_tokens", "approach3_flops", "approach3_tokens"])


def __getattr__(name):   # TABLE3 / TABLE_A3 as DataFrames, built (with pandas) on first use
    if name in ("TABLE3", "TABLE_A3"):
        import pandas as pd

        rows, cols = _TABLE3_ROWS if name == "TABLE3" else _TABLE_A3_ROWS
        globals()[name] = pd.DataFrame(rows, columns=cols)
        return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

# Chinchilla Table 2 (published exponents and 80% intervals where given).
TABLE2 = {"approach1": {"a": 0.50, "a_ci": (0.488, 0.502), "b": 0.50, "b_ci": (0.501, 0.512)},
          "approach2": {"a": 0.49, "a_ci": (0.462, 0.534), "b": 0.51, "b_ci": (0.483, 0.529)},
          "approach3": {"a": 0.46, "a_ci": (0.454, 0.455), "b": 0.54, "b_ci": (0.542, 0.543)},
          "kaplan2020": {"a": 0.73, "b": 0.27}}


def get_law(law):
    """A LawParams from a preset name, a LawParams or anything with E, A, B, alpha, beta; a
    fit of another law (anything with ``n_opt``, ``d_opt`` and ``loss``) is returned as is."""
    if isinstance(law, str):
        if law not in PRESETS:
            raise ConfigError(f"preset: unknown {law!r}; choose from {', '.join(PRESETS)}")
        return PRESETS[law].law
    if isinstance(law, LawParams):
        return law
    if getattr(getattr(law, "law", None), "name", "chinchilla") != "chinchilla":
        return law
    if hasattr(law, "params"):
        return law.params
    try:
        return LawParams(law.E, law.A, law.B, law.alpha, law.beta)
    except AttributeError:
        raise ConfigError("law: expected a preset name, LawParams or an Approach 3 fit") from None


def compare_table(fits: dict | None = None, params=(400e6, 1e9, 10e9, 67e9, 175e9, 280e9,
                                                    520e9, 1e12, 10e12)):
    """Tables 3/A3 side by side with the FLOPs and tokens that ``fits`` (name -> law) imply
    for the same model sizes (inverting N_opt(C) = G (C/6)^a)."""
    df = __getattr__("TABLE3")[["params", "flops", "tokens"]].rename(
        columns={"flops": "table3_flops", "tokens": "table3_tokens"}).merge(__getattr__("TABLE_A3"), on="params")
    df = df[df["params"].isin(params)].reset_index(drop=True)
    for name, law in (fits or {}).items():
        p = get_law(law)
        C = 6.0 * (df["params"].to_numpy() / p.G) ** (1.0 / p.a)
        df[f"{name}_flops"] = C
        df[f"{name}_tokens"] = p.d_opt(C)
    return df


def chinchilla_vs_gopher(law, C: float = GOPHER_FLOPS, boot=None, level: float = 0.95) -> dict:
    """Compute-optimal N, D at C and predicted losses of Gopher and Chinchilla under ``law``.

    ``boot``: a :class:`analysis.uncertainty.BootstrapResult` with Approach 3 samples; adds
    ``ci`` with percentile intervals for every number.
    """
    p = get_law(law)
    out = {"C": C, "G": p.G, "a": p.a, "b": p.b, "N_opt": float(p.n_opt(C)),
           "D_opt": float(p.d_opt(C)), "tokens_per_param": float(p.tokens_per_param(C)),
           "loss_opt": float(p.loss_opt(C))}
    for m in ("Gopher", "Chinchilla"):
        out[f"loss_{m}"] = float(p.loss(*MODELS[m]))
    if boot is not None and getattr(boot, "law", None) is not None and \
            getattr(getattr(boot, "model", None), "name", "chinchilla") == "chinchilla":
        la, lb, le, al, be = boot.law[np.isfinite(boot.law).all(1)].T
        laws = LawParams(np.exp(le), np.exp(la), np.exp(lb), al, be)
        q = (1 - level) / 2
        ci = lambda s: [float(np.quantile(s, q)), float(np.quantile(s, 1 - q))]
        with np.errstate(all="ignore"):
            out["ci"] = {"N_opt": ci(laws.n_opt(C)), "D_opt": ci(laws.d_opt(C)),
                         "tokens_per_param": ci(laws.tokens_per_param(C)),
                         "loss_opt": ci(laws.loss_opt(C)),
                         "loss_Gopher": ci(laws.loss(*MODELS["Gopher"])),
                         "loss_Chinchilla": ci(laws.loss(*MODELS["Chinchilla"])),
                         "a": ci(laws.a), "level": level}
    return out


# Muennighoff et al. 2023 (huggingface/datablations README, C4 fit) in the data-constrained
# law's readable form (analysis.data_constrained.theta(**DATA_CONSTRAINED_C4) -> coordinates).
DATA_CONSTRAINED_C4 = dict(E=math.exp(0.6254804), A=math.exp(6.255414), B=math.exp(7.3049974),
                           alpha=0.3526596, beta=0.3526596, R_D_star=15.387756, R_N_star=5.309743)


# ----------------------------------------------------------------------------- data sets

REFERENCE_DIR = Path(__file__).with_name("reference_data")
DATASETS = ("epoch_chinchilla", "chinchilla_table_a9", "porian2024_isoflops", "openathena_isoflops")


def provenance(name: str) -> dict:
    """The provenance row of a shipped data set: file, bytes, sha256, repo, path, commit, how."""
    with open(REFERENCE_DIR / "PROVENANCE.csv", newline="") as f:
        rows = {r["name"]: r for r in csv.DictReader(f)}
    if name not in rows:
        raise ConfigError(f"dataset: unknown {name!r}; choose one of {', '.join(rows)}")
    return rows[name]


def dataset_path(name: str) -> Path:
    """Path of a shipped data set, after checking its sha256 against its provenance row."""
    row = provenance(name)
    p = REFERENCE_DIR / row["file"]
    digest = hashlib.sha256(p.read_bytes()).hexdigest()
    if digest != row["sha256"]:
        raise ConfigError(f"dataset {name}: {p} has sha256 {digest}, provenance says {row['sha256']}; "
                          f"restore the file from {row['repo']} at {row['commit']}")
    return p


def load(name: str):
    """A shipped published data set as a DataFrame (``epoch_chinchilla``: Epoch's 245-run
    reconstruction; ``chinchilla_table_a9``; ``porian2024_isoflops``; ``openathena_isoflops``)."""
    import pandas as pd

    return pd.read_csv(dataset_path(name))


def epoch_240():
    """Epoch's reconstruction without its 5 highest losses (the 240 points of the replication)."""
    df = load("epoch_chinchilla")
    return df.drop(df["loss"].nlargest(5).index).reset_index(drop=True)
