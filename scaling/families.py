"""Model families as data, and a size -> shape rule for any target N.

Three published families, transcribed from the papers (shapes only; vocabulary and context
length are the caller's choice, because they depend on the tokenizer and task):

* ``chinchilla``: Hoffmann et al. 2022, Table A9: the 50 shapes of the Chinchilla
  IsoFLOP study.  Names are ``chinchilla-<reported size in millions>M``, e.g.
  ``chinchilla-44M`` ... ``chinchilla-16183M`` (sizes in millions are unique across the
  table, whereas rounding to ``1.4B`` would collide: 1,424M and 1,429M).  Reported sizes
  count tied embeddings (one 32k x d matrix) and a relative-position projection per layer:
  ``count_params(member_config(...), relative_position_projection=True).total`` is within
  1% of them at vocab 32,000.  Several rows have ``d_model != n_heads * kv_size``
  (e.g. 2688 with 22 x 128); the model supports that (``d_attn`` is separate).
* ``gopher``: Rae et al. 2021, Table 1: ``gopher-44M``, ``gopher-117M``, ``gopher-417M``,
  ``gopher-1.4B``, ``gopher-7.1B``, ``gopher-280B`` (ffw = 4 d_model).
* ``gpt3`` (alias ``kaplan``): Brown et al. 2020, Table 2.1, the Kaplan-style GPT-3 sizes:
  ``gpt3-125M`` (alias ``gpt3-small``), ``gpt3-350M`` (``gpt3-medium``), ``gpt3-760M``
  (``gpt3-large``), ``gpt3-1.3B`` (``gpt3-xl``), ``gpt3-2.7B``, ``gpt3-6.7B``, ``gpt3-13B``,
  ``gpt3-175B`` (ffw = 4 d_model).  The paper prints d_model 5140 for 13B; we use 5120
  (= 40 heads x 128); for 1.3B it prints 24 heads of size 128, which contradicts d_model
  2048 and the 1.3B size (that would be 1.52B), so we use 16 x 128.  Both notes are in the
  members' ``source``.

Names are matched case-insensitively; an unknown name raises :class:`ConfigError` listing
the closest matches.

The size -> shape rule (:func:`shape_for_params`) covers targets from ~10k to ~200B
parameters on one fixed "ladder" of shapes: every (d_model, n_layers) on a grid, scored by
how close its aspect ratio d_model / n_layers is to a target that grows with size (32 at
10k params, 64 at ~1e8, ~100 at 1e10, ~128 at 1e11, as in the Kaplan/GPT-3 and Chinchilla
families), one best shape kept per 6%-wide bin of N.  A target picks the ladder rung with
the smallest relative error; because the ladder is fixed and sorted, the result is
deterministic and monotone in the target, and within 15% of it everywhere in 1e4..1e11
(in practice under ~7% above 1e5; the coarse 16-wide grid of tiny models is what limits it
below).
"""

from __future__ import annotations

import bisect
import dataclasses
import difflib
import functools
import math
from typing import Iterable

from scaling.config import ConfigError, ModelConfig


@dataclasses.dataclass(frozen=True)
class FamilyMember:
    """One published model shape.  ``reported_params`` is the size printed in the paper."""

    name: str
    d_model: int
    ffw_size: int
    kv_size: int
    n_heads: int
    n_layers: int
    reported_params: int
    source: str
    family: str = ""

    @property
    def d_attn(self) -> int:
        return self.n_heads * self.kv_size


_A9_SOURCE = "Hoffmann et al. 2022 (Chinchilla), Table A9"
# (params in millions, d_model, ffw_size, kv_size, n_heads, n_layers), in the paper's order.
_A9_ROWS = (
    (44, 512, 2048, 64, 8, 8),
    (57, 576, 2304, 64, 9, 9),
    (74, 640, 2560, 64, 10, 10),
    (90, 640, 2560, 64, 10, 13),
    (106, 640, 2560, 64, 10, 16),
    (117, 768, 3072, 64, 12, 12),
    (140, 768, 3072, 64, 12, 15),
    (163, 768, 3072, 64, 12, 18),
    (175, 896, 3584, 64, 14, 14),
    (196, 896, 3584, 64, 14, 16),
    (217, 896, 3584, 64, 14, 18),
    (251, 1024, 4096, 64, 16, 16),
    (278, 1024, 4096, 64, 16, 18),
    (306, 1024, 4096, 64, 16, 20),
    (425, 1280, 5120, 128, 10, 18),
    (489, 1280, 5120, 128, 10, 21),
    (509, 1408, 5632, 128, 11, 18),
    (552, 1280, 5120, 128, 10, 24),
    (587, 1408, 5632, 128, 11, 21),
    (632, 1536, 6144, 128, 12, 19),
    (664, 1408, 5632, 128, 11, 24),
    (724, 1536, 6144, 128, 12, 22),
    (816, 1536, 6144, 128, 12, 25),
    (893, 1792, 7168, 128, 14, 20),
    (1018, 1792, 7168, 128, 14, 23),
    (1143, 1792, 7168, 128, 14, 26),
    (1266, 2048, 8192, 128, 16, 22),
    (1424, 2176, 8704, 128, 17, 22),
    (1429, 2048, 8192, 128, 16, 25),
    (1593, 2048, 8192, 128, 16, 28),
    (1609, 2176, 8704, 128, 17, 25),
    (1731, 2304, 9216, 128, 18, 24),
    (1794, 2176, 8704, 128, 17, 28),
    (2007, 2304, 9216, 128, 18, 28),
    (2283, 2304, 9216, 128, 18, 32),
    (2298, 2560, 10240, 128, 20, 26),
    (2639, 2560, 10240, 128, 20, 30),
    (2980, 2560, 10240, 128, 20, 34),
    (3530, 2688, 10752, 128, 22, 36),
    (3802, 2816, 11264, 128, 22, 36),
    (4084, 2944, 11776, 128, 22, 36),
    (4516, 3072, 12288, 128, 24, 36),
    (6796, 3584, 14336, 128, 28, 40),
    (9293, 4096, 16384, 128, 32, 42),
    (11452, 4352, 17408, 128, 32, 47),
    (12295, 4608, 18432, 128, 36, 44),
    (12569, 4608, 18432, 128, 32, 47),
    (13735, 4864, 19456, 128, 32, 47),
    (14940, 4992, 19968, 128, 32, 49),
    (16183, 5120, 20480, 128, 40, 47),
)

CHINCHILLA_A9: tuple[FamilyMember, ...] = tuple(
    FamilyMember(f"chinchilla-{m}M", d, f, kv, h, L, m * 1_000_000, _A9_SOURCE, "chinchilla")
    for (m, d, f, kv, h, L) in _A9_ROWS
)

_GOPHER_SOURCE = "Rae et al. 2021 (Gopher), Table 1; ffw = 4 d_model"
# (name suffix, reported params, n_layers, n_heads, kv_size, d_model)
_GOPHER_ROWS = (
    ("44M", 44e6, 8, 16, 32, 512),
    ("117M", 117e6, 12, 12, 64, 768),
    ("417M", 417e6, 12, 12, 128, 1536),
    ("1.4B", 1.4e9, 24, 16, 128, 2048),
    ("7.1B", 7.1e9, 32, 32, 128, 4096),
    ("280B", 280e9, 80, 128, 128, 16384),
)
GOPHER: tuple[FamilyMember, ...] = tuple(
    FamilyMember(f"gopher-{s}", d, 4 * d, kv, h, L, int(p), _GOPHER_SOURCE, "gopher")
    for (s, p, L, h, kv, d) in _GOPHER_ROWS
)

_GPT3_SOURCE = "Brown et al. 2020 (GPT-3), Table 2.1; ffw = 4 d_model"
# (name suffix, alias, reported params, n_layers, d_model, n_heads, d_head)
_GPT3_ROWS = (
    ("125M", "small", 125e6, 12, 768, 12, 64),
    ("350M", "medium", 350e6, 24, 1024, 16, 64),
    ("760M", "large", 760e6, 24, 1536, 16, 96),
    ("1.3B", "xl", 1.3e9, 24, 2048, 16, 128),
    ("2.7B", "", 2.7e9, 32, 2560, 32, 80),
    ("6.7B", "", 6.7e9, 32, 4096, 32, 128),
    ("13B", "", 13e9, 40, 5120, 40, 128),
    ("175B", "", 175e9, 96, 12288, 96, 128),
)
_GPT3_NOTES = {
    "13B": "; the paper prints d_model 5140, a typo for 40 heads x 128 = 5120",
    "1.3B": "; the paper prints 24 heads of 128, inconsistent with d_model 2048 and 1.3B: we use 16 x 128",
}
GPT3: tuple[FamilyMember, ...] = tuple(
    FamilyMember(f"gpt3-{s}", d, 4 * d, dh, h, L, int(p),
                 _GPT3_SOURCE + _GPT3_NOTES.get(s, ""),
                 "gpt3")
    for (s, _a, p, L, d, h, dh) in _GPT3_ROWS
)
KAPLAN = GPT3

FAMILIES: dict[str, tuple[FamilyMember, ...]] = {"chinchilla": CHINCHILLA_A9, "gopher": GOPHER, "gpt3": GPT3}
_FAMILY_ALIASES = {"kaplan": "gpt3", "gpt-3": "gpt3", "a9": "chinchilla", "chinchilla_a9": "chinchilla"}
_MEMBER_ALIASES = {f"gpt3-{a}": f"gpt3-{s}".lower() for (s, a, *_r) in _GPT3_ROWS if a}


def _family_key(family: str) -> str:
    key = _FAMILY_ALIASES.get(family.lower(), family.lower())
    if key not in FAMILIES:
        raise ConfigError(f"family={family!r}: choose one of {sorted(FAMILIES)} (or alias 'kaplan')")
    return key


def list_members(family: str | None = None) -> list[str]:
    """Member names, in paper order (all families, or one: ``chinchilla``, ``gopher``, ``gpt3``/``kaplan``)."""
    fams: Iterable[str] = FAMILIES if family is None else (_family_key(family),)
    return [m.name for f in fams for m in FAMILIES[f]]


def get_member(name: str, family: str | None = None) -> FamilyMember:
    """The member called ``name`` (case-insensitive; aliases like ``gpt3-small`` work).

    ``family`` restricts the search; a bare size like ``"44M"`` is then accepted too
    (``get_member("44M", family="gopher")``).  Unknown names raise :class:`ConfigError`
    naming the closest matches.
    """
    if not isinstance(name, str) or not name:
        raise ConfigError(f"member={name!r}: give a member name, e.g. 'chinchilla-44M'")
    fams = list(FAMILIES) if family is None else [_family_key(family)]
    pool = {m.name.lower(): m for f in fams for m in FAMILIES[f]}
    key = name.strip().lower()
    key = _MEMBER_ALIASES.get(key, key)
    if key in pool:
        return pool[key]
    if family is not None:
        prefixed = _MEMBER_ALIASES.get(f"{fams[0]}-{key}", f"{fams[0]}-{key}")
        if prefixed in pool:
            return pool[prefixed]
    close = difflib.get_close_matches(key, list(pool), n=4, cutoff=0.5)
    hint = f"did you mean {', '.join(pool[c].name for c in close)}?" if close else "see scaling.families.list_members()"
    raise ConfigError(f"member={name!r}: unknown family member{'' if family is None else f' of {family!r}'}; {hint}")


_CONFIG_FIELDS = {f.name for f in dataclasses.fields(ModelConfig)}


def _apply_overrides(base: dict, overrides: dict) -> ModelConfig:
    unknown = sorted(set(overrides) - _CONFIG_FIELDS)
    if unknown:
        raise ConfigError(f"model overrides {unknown}: not ModelConfig fields; known: {sorted(_CONFIG_FIELDS)}")
    return ModelConfig(**{**base, **overrides}).validate()


def member_config(name: str, vocab_size: int, seq_len: int, *, family: str | None = None,
                  **overrides) -> ModelConfig:
    """A validated :class:`ModelConfig` for a family member; ``overrides`` replace any field.

    E.g. ``member_config("chinchilla-44M", 32000, 2048, tied_embeddings=True)``.  The
    member's published shape fills d_model, n_layers, n_heads, kv_size and ffw_size;
    ``name`` is set to the member name.
    """
    m = get_member(name, family=family)
    base = dict(vocab_size=vocab_size, seq_len=seq_len, d_model=m.d_model, n_layers=m.n_layers,
                n_heads=m.n_heads, kv_size=m.kv_size, ffw_size=m.ffw_size, name=m.name)
    return _apply_overrides(base, overrides)


# ----------------------------------------------------------------------------------------
# Size -> shape rule
# ----------------------------------------------------------------------------------------

SHAPE_TOLERANCE = 0.15  # the rule's guaranteed relative error on 1e4 <= N <= 1e11 (non-embedding)
_BIN = math.log(1.06)  # ladder bins: one shape per 6% of N
_MAX_LAYERS = 160
_SHAPE_FIELDS = ("d_model", "n_layers", "n_heads", "kv_size", "ffw_size")


def target_aspect_ratio(n_non_embedding: float) -> float:
    """Preferred d_model / n_layers at a non-embedding size: 32 at 1e4, x4 per 7 decades (~128 at 1e11)."""
    x = min(max(math.log10(max(n_non_embedding, 1.0)), 4.0), 11.0)
    return 32.0 * 4.0 ** ((x - 4.0) / 7.0)


def _d_grid() -> list[int]:
    """d_model candidates: multiples of 16 below 256, of 64 below 1024, then of 128 up to 16384."""
    return list(range(16, 256, 16)) + list(range(256, 1024, 64)) + list(range(1024, 16384 + 1, 128))


def heads_for(d_model: int) -> tuple[int, int]:
    """(n_heads, kv_size) for a width: kv 128 from d 1024 up, 64 from 256, else the largest of 64/32/16
    dividing d with at least two heads (one head at d 16)."""
    if d_model >= 1024 and d_model % 128 == 0:
        return d_model // 128, 128
    if d_model >= 256 and d_model % 64 == 0:
        return d_model // 64, 64
    for kv in (64, 32, 16):
        if d_model % kv == 0 and d_model // kv >= 2:
            return d_model // kv, kv
    return 1, d_model


@functools.lru_cache(maxsize=64)
def _ladder(basis: str, norm: str, activation: str, vocab_size: int, seq_len: int, position: str,
            tied: bool) -> tuple[tuple[int, int, int], ...]:
    """Sorted ((count, d_model, n_layers), ...) rungs for one model variant and basis."""
    from scaling.accounting import block_params

    best: dict[int, tuple[float, int, int, int]] = {}
    for d in _d_grid():
        n_heads, kv = heads_for(d)
        per_layer = block_params(d, n_heads * kv, 4 * d, norm=norm, activation=activation)
        final_norm = d if norm == "rmsnorm" else 2 * d
        embed = vocab_size * d + (seq_len * d if position == "learned" else 0)
        head = 0 if tied else vocab_size * d
        for L in range(1, _MAX_LAYERS + 1):
            non_emb = L * per_layer + final_norm
            if non_emb <= 1.2e7 and L > 8:  # tiny (CPU) models stay shallow: 1-8 layers
                break
            count = non_emb if basis == "non_embedding" else non_emb + embed + head
            score = abs(math.log((d / L) / target_aspect_ratio(non_emb)))
            b = int(math.floor(math.log(count) / _BIN))
            if b not in best or score < best[b][0]:
                best[b] = (score, count, d, L)
    return tuple(sorted((c, d, L) for (_s, c, d, L) in best.values()))


def shape_for_params(n: float, *, vocab_size: int, seq_len: int, basis: str = "non_embedding",
                     **overrides) -> ModelConfig:
    """A :class:`ModelConfig` whose ``basis`` parameter count is closest to ``n``.

    ``basis`` is ``"non_embedding"`` (default) or ``"total"`` (which includes the embedding,
    so it depends on ``vocab_size``, tying and ``position``).  The shape has
    ``ffw_size = 4 * d_model``, ``d_model = n_heads * kv_size`` (see :func:`heads_for`) and
    an aspect ratio that grows with size (:func:`target_aspect_ratio`); tiny models
    (<= ~1e7 non-embedding) have 1-8 layers and widths in multiples of 16.  ``overrides``
    set non-shape fields (norm, position, activation, tied_embeddings, compute_dtype, name);
    the chosen shape accounts for them (e.g. SwiGLU's third MLP matrix).  The result is
    within :data:`SHAPE_TOLERANCE` of ``n`` for non-embedding targets in 1e4..1e11
    (raises :class:`ConfigError` when ``n`` is outside what the ladder can reach within it).
    """
    if basis not in ("non_embedding", "total"):
        raise ConfigError(f"basis={basis!r}: choose 'non_embedding' or 'total'")
    if not (isinstance(n, (int, float)) and math.isfinite(n) and n > 0):
        raise ConfigError(f"target N={n!r}: must be a positive number of parameters")
    shape_over = sorted(set(overrides) & set(_SHAPE_FIELDS))
    if shape_over:
        raise ConfigError(f"shape_for_params: {shape_over} are chosen by the rule; build a ModelConfig "
                          f"directly to fix them")
    probe = _apply_overrides(dict(vocab_size=vocab_size, seq_len=seq_len, d_model=16, n_layers=1,
                                  n_heads=1, kv_size=16, ffw_size=64), overrides)
    rungs = _ladder(basis, probe.norm, probe.activation, probe.vocab_size, probe.seq_len,
                    probe.position, bool(probe.tied_embeddings))
    counts = [c for c, _d, _L in rungs]
    i = bisect.bisect_left(counts, n)
    cands = [j for j in (i - 1, i) if 0 <= j < len(rungs)]
    j = min(cands, key=lambda k: (abs(counts[k] / n - 1.0), counts[k]))
    count, d, L = rungs[j]
    if abs(count / n - 1.0) > SHAPE_TOLERANCE:
        raise ConfigError(f"target N={n:.4g} ({basis}): outside the size rule's range "
                          f"[{counts[0]:.3g}, {counts[-1]:.3g}] at this vocab/tying; pick a target inside it")
    n_heads, kv = heads_for(d)
    base = dict(vocab_size=vocab_size, seq_len=seq_len, d_model=d, n_layers=L, n_heads=n_heads,
                kv_size=kv, ffw_size=4 * d, name=f"rule-{_fmt(n)}")
    return _apply_overrides(base, overrides)


def _fmt(n: float) -> str:
    for unit, scale in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= scale:
            return f"{n / scale:.3g}{unit}"
    return f"{n:.3g}"
