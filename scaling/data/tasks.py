"""seqio task definitions (importing this module registers them; it imports TensorFlow).

* ``pystdlib_<vocab>`` for vocab in ``byte, sp512, sp1024, sp4096, sp32000``: TFDS
  ``pystdlib:1.0.0`` (prepared under the default data dir, keyed by the manifest hash) ->
  rekey text->targets -> tokenize -> append_eos -> CacheDatasetPlaceholder -> split_tokens.
* ``synthetic_markov``: the default chain's cached train/validation streams, as documents
  of 4096 tokens (no EOS), passthrough vocabulary.
* ``c4_en``: TFDS ``c4/en:3.1.0`` with the SentencePiece model at ``$SCALING_C4_VOCAB``
  (default the T5 ``cc_all.32000`` model on GCS).

Each task's metadata (``corpus_hash``, ``entropy_rate``) is stored on the task as
``task.scaling_metadata``.  The tasks prepare themselves offline on first use: the pystdlib
source runs ``download_and_prepare`` before its first read, the SentencePiece vocabularies
train on first use and ``synthetic_markov`` generates its cached stream, so plain
``seqio.get_mixture_or_task("pystdlib_byte").get_dataset(...)`` works on a fresh machine.
:func:`ensure_prepared` does the same eagerly.
"""

from __future__ import annotations

import functools
import os

import numpy as np
import seqio
import tensorflow as tf

from scaling.config import DataConfig
from scaling.data import default_data_dir, pystdlib
from scaling.settings import Settings
from scaling.data import vocab as V
from scaling.data.c4 import DEFAULT_VOCAB, TFDS_NAME as C4_TFDS

PYSTDLIB_VOCABS = ("byte", "sp512", "sp1024", "sp4096", "sp32000")



def text_preprocessors() -> list:
    """A text task's seqio preprocessors: text -> targets, tokenize, EOS per document, cache, split rows."""
    return [functools.partial(seqio.preprocessors.rekey, key_map={"targets": "text"}),
            seqio.preprocessors.tokenize,
            seqio.preprocessors.append_eos,
            seqio.CacheDatasetPlaceholder(),
            split_tokens]

def split_tokens(dataset, sequence_length, output_features=None, feature_key="targets"):
    """Chop each document into pieces of <= L tokens (seqio 0.0.20 has no split_tokens).

    Without it ``get_dataset`` silently truncates every document to ``L`` tokens.
    """
    L = sequence_length[feature_key]

    def _to_ragged(x):
        t = x[feature_key]
        n = tf.size(t, out_type=tf.int64)
        nfull = n // L
        lengths = tf.concat([tf.fill([nfull], tf.cast(L, tf.int64)), [n - nfull * L]], 0)
        return {feature_key: tf.RaggedTensor.from_row_lengths(t, tf.boolean_mask(lengths, lengths > 0))}

    return dataset.map(_to_ragged, num_parallel_calls=tf.data.AUTOTUNE).unbatch()


class _LazySentencePiece(seqio.SentencePieceVocabulary):
    """A SentencePiece vocabulary whose file is trained on first use (offline)."""

    def __init__(self, spec: str, corpus_hash: str, data_dir: str, root: str):
        self._spec, self._corpus_hash, self._data_dir, self._root = spec, corpus_hash, data_dir, root
        size = V.parse_vocab(spec)[1]
        super().__init__(V.sp_model_path(data_dir, "pystdlib", corpus_hash, size), extra_ids=0)

    def _ensure(self):
        if not os.path.isfile(self.sentencepiece_model_file):
            ensure_vocab(self._spec, self._data_dir, self._root, self._corpus_hash)

    @property
    def sp_model(self):
        self._ensure()
        return super().sp_model

    @property
    def tf_tokenizer(self):
        self._ensure()
        return super().tf_tokenizer


class _PreparingTfdsSource(seqio.TfdsDataSource):
    """A TfdsDataSource that runs the (offline) ``download_and_prepare`` before its first read.

    Every read of the source (``get_dataset``, ``num_input_examples``, ``list_shards``) goes
    through ``tfds_dataset``, so ``seqio.get_mixture_or_task(name).get_dataset(...)`` works on a
    fresh machine with no ``ensure_prepared`` call.
    """

    def __init__(self, prepare, **kw):
        self._prepare, self._prepared = prepare, False
        super().__init__(**kw)

    @property
    def tfds_dataset(self):
        if not self._prepared:
            self._prepare()
            self._prepared = True
        return self._tfds_dataset


def ensure_vocab(spec, data_dir, root, corpus_hash):
    return V.get_vocab(spec, data_dir=data_dir, task="pystdlib", corpus_hash=corpus_hash,
                       train_texts=lambda: pystdlib.iter_documents(data_dir, root, corpus_hash, "train"))


_STATE: dict = {}


def ensure_prepared(task_name: str) -> None:
    """Prepare what a registered task reads (TFDS dataset, vocabulary, markov stream)."""
    if task_name.startswith("pystdlib_"):
        data_dir, root, h = _STATE["pystdlib"]
        pystdlib.prepare(data_dir, root, h)
        ensure_vocab(task_name[len("pystdlib_"):], data_dir, root, h)


def _markov_source(split: str, shuffle_files: bool = False, seed=None):
    from scaling.data import open_source
    src = open_source(DataConfig(task="synthetic_markov"), split, 2)
    toks = np.asarray(src.tokens[: (src.tokens.shape[0] // 4096) * 4096]).astype("int32").reshape(-1, 4096)
    return tf.data.Dataset.from_tensor_slices({"targets": toks})


def register_all() -> list[str]:
    names = []
    data_dir = default_data_dir(None)
    root = os.path.abspath(pystdlib.default_root())
    h = pystdlib.manifest_hash(root, cache_dir=data_dir)
    _STATE["pystdlib"] = (data_dir, root, h)
    pystdlib.builder_class()  # registers "pystdlib" with TFDS
    for spec in PYSTDLIB_VOCABS:
        name = f"pystdlib_{spec}"
        vocab = seqio.ByteVocabulary() if spec == "byte" else _LazySentencePiece(spec, h, data_dir, root)
        seqio.TaskRegistry.remove(name)
        task = seqio.TaskRegistry.add(
            name,
            source=_PreparingTfdsSource(functools.partial(pystdlib.prepare, data_dir, root, h),
                                        tfds_name=f"{pystdlib.TFDS_NAME}:{pystdlib.TFDS_VERSION}",
                                        tfds_data_dir=pystdlib.tfds_dir(data_dir, h), read_only=True,
                                        splits=("train", "validation")),
            preprocessors=text_preprocessors(),
            output_features={"targets": seqio.Feature(vocab, add_eos=True, dtype=tf.int32)},
            shuffle_buffer_size=10_000)
        task.scaling_metadata = {"corpus_hash": h, "entropy_rate": None}
        names.append(name)

    from scaling.data.synthetic_markov import MarkovSpec
    spec = MarkovSpec()
    seqio.TaskRegistry.remove("synthetic_markov")
    task = seqio.TaskRegistry.add(
        "synthetic_markov",
        source=seqio.FunctionDataSource(_markov_source, splits=("train", "validation")),
        preprocessors=[seqio.CacheDatasetPlaceholder(), split_tokens],
        output_features={"targets": seqio.Feature(seqio.PassThroughVocabulary(spec.vocab_size),
                                                  add_eos=False, dtype=tf.int32)},
        shuffle_buffer_size=10_000)
    from scaling.data.synthetic_markov import entropy_rate
    task.scaling_metadata = {"corpus_hash": spec.key, "entropy_rate": entropy_rate(spec), "spec": spec}
    names.append("synthetic_markov")

    seqio.TaskRegistry.remove("c4_en")
    task = seqio.TaskRegistry.add(
        "c4_en",
        source=seqio.TfdsDataSource(tfds_name=C4_TFDS),
        preprocessors=text_preprocessors(),
        output_features={"targets": seqio.Feature(
            seqio.SentencePieceVocabulary(Settings.from_environ().c4_vocab or DEFAULT_VOCAB, extra_ids=0),
            add_eos=True, dtype=tf.int32)},
        shuffle_buffer_size=10_000)
    task.scaling_metadata = {"corpus_hash": C4_TFDS, "entropy_rate": None}
    names.append("c4_en")
    return names


register_all()
