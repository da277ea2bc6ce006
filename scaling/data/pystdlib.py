"""``pystdlib``: the Python standard library of the running interpreter as a TFDS dataset.

This is the corpus that lets the whole project run with no network: every Python install
carries ~31 MB of ``.py`` files.  We walk ``sysconfig.get_paths()["stdlib"]`` in sorted
order, prune ``site-packages``, ``dist-packages`` and ``__pycache__`` (third-party code is
not part of the corpus), and split deterministically by the md5 of the relative path:
``md5(relpath) % 100 < 2`` goes to ``validation`` (about 2%), the rest to ``train``.

The corpus differs slightly between Python patch versions, so we compute a *manifest hash*
(sha256 over every relative path and file content, in order).  It becomes
``TaskInfo.corpus_hash``, is recorded in every run, and keys every prepared artefact (the
TFDS dataset directory, the vocabularies and the token caches), so two interpreters never
share a cache by accident.

Tests (and anyone who wants a small corpus) point the builder at another tree with the
``SCALING_PYSTDLIB_ROOT`` environment variable, or ``DataConfig.options=(("root", DIR),)``.

Nothing here imports TensorFlow at module import: the TFDS builder class is created on
first use by :func:`builder_class` (``tensorflow_datasets`` itself imports lazily).
"""

from __future__ import annotations

import hashlib
import json
import os
import sysconfig

from scaling.config import ConfigError

TFDS_NAME = "pystdlib"
TFDS_VERSION = "1.0.0"
PRUNE = ("site-packages", "dist-packages", "__pycache__")
VALIDATION_PERCENT = 2


def default_root() -> str:
    """The corpus root: ``Settings.pystdlib_root`` (``$SCALING_PYSTDLIB_ROOT``), else this interpreter's stdlib."""
    from scaling.settings import Settings

    return Settings.from_environ().pystdlib_root or sysconfig.get_paths()["stdlib"]


def split_of(relpath: str) -> str:
    """Deterministic ~98/2 split by the md5 of the relative path."""
    h = int(hashlib.md5(relpath.encode("utf-8")).hexdigest(), 16)
    return "validation" if h % 100 < VALIDATION_PERCENT else "train"


def list_files(root: str) -> list[str]:
    """Relative paths of the corpus ``.py`` files under ``root``, sorted."""
    if not os.path.isdir(root):
        raise ConfigError(f"data.options root={root!r}: corpus directory does not exist; "
                          f"point SCALING_PYSTDLIB_ROOT / options root at a directory of .py files")
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in PRUNE)
        for f in filenames:
            if f.endswith(".py"):
                out.append(os.path.relpath(os.path.join(dirpath, f), root))
    out.sort()
    if not out:
        raise ConfigError(f"data.options root={root!r}: corpus directory holds no .py files; "
                          f"point SCALING_PYSTDLIB_ROOT / options root at a directory of .py files")
    return out


def read_text(root: str, rel: str) -> str:
    with open(os.path.join(root, rel), "rb") as f:
        return f.read().decode("utf-8", "replace")


def manifest_hash(root: str, cache_dir: str | None = None) -> str:
    """sha256 over (relpath, content) of every corpus file.

    Hashing 31 MB costs ~0.1 s; to keep ``open_source`` fast on a warm cache we memoise the
    result under ``cache_dir`` keyed by a cheap fingerprint of (relpath, size, mtime).  Any
    edit to a file changes size or mtime and therefore forces a full re-hash.
    """
    files = list_files(root)
    fp = hashlib.sha256()
    for rel in files:
        st = os.stat(os.path.join(root, rel))
        fp.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    memo = None
    if cache_dir:
        memo = os.path.join(cache_dir, "manifests", fp.hexdigest()[:32] + ".json")
        try:
            with open(memo) as f:
                return json.load(f)["manifest_hash"]
        except (OSError, ValueError, KeyError):
            pass
    h = hashlib.sha256()
    for rel in files:
        h.update(rel.encode("utf-8") + b"\0")
        with open(os.path.join(root, rel), "rb") as f:
            h.update(f.read())
        h.update(b"\0")
    digest = h.hexdigest()
    if memo:
        os.makedirs(os.path.dirname(memo), exist_ok=True)
        tmp = memo + f".tmp{os.getpid()}"
        with open(tmp, "w") as f:
            json.dump({"manifest_hash": digest, "root": root, "num_files": len(files)}, f)
        os.replace(tmp, memo)
    return digest


_BUILDER = None


def builder_class():
    """The ``pystdlib`` TFDS GeneratorBasedBuilder (registered with TFDS on first call)."""
    global _BUILDER
    if _BUILDER is not None:
        return _BUILDER
    import tensorflow_datasets as tfds

    class Pystdlib(tfds.core.GeneratorBasedBuilder):
        """Python standard library sources: one example per ``.py`` file."""

        VERSION = tfds.core.Version(TFDS_VERSION)
        RELEASE_NOTES = {TFDS_VERSION: "stdlib .py files, md5(relpath) 98/2 split, manifest hash."}

        # TFDS locates checksum/README files next to the builder's source through
        # importlib_resources (not installed here); this builder has none.
        @tfds.core.utils.classproperty
        @classmethod
        def code_path(cls):
            return None

        def __init__(self, *, root: str | None = None, **kwargs):
            self._root = root or default_root()
            super().__init__(**kwargs)

        def _info(self):
            # DatasetInfo(builder=self) directly: dataset_info_from_configs() would look
            # for README/CITATIONS via importlib.resources and fail outside a TFDS package.
            return tfds.core.DatasetInfo(
                builder=self,
                description="Python standard library .py sources (offline corpus).",
                features=tfds.features.FeaturesDict(
                    {"text": tfds.features.Text(), "path": tfds.features.Text()}),
                metadata=tfds.core.MetadataDict(),
            )

        def _split_generators(self, dl_manager):  # dl_manager unused: no network
            files = list_files(self._root)
            self.info.metadata["manifest_hash"] = manifest_hash(self._root)
            self.info.metadata["num_files"] = len(files)
            import sys
            self.info.metadata["python"] = sys.version.split()[0]
            return {s: self._generate_examples(files, s) for s in ("train", "validation")}

        def _generate_examples(self, files, split):
            for rel in files:
                if split_of(rel) == split:
                    yield rel, {"text": read_text(self._root, rel), "path": rel}

    _BUILDER = Pystdlib
    return Pystdlib


def tfds_dir(data_dir: str, corpus_hash: str) -> str:
    """TFDS data_dir of one corpus: prepared datasets are keyed by manifest hash."""
    return os.path.join(data_dir, "tfds", f"pystdlib-{corpus_hash[:16]}")


def prepare(data_dir: str, root: str, corpus_hash: str):
    """``download_and_prepare`` the builder for ``root`` (offline; ~0.5 s + TF import)."""
    cls = builder_class()
    import tensorflow_datasets as tfds
    tfds.disable_progress_bar()
    b = cls(root=root, data_dir=tfds_dir(data_dir, corpus_hash))
    b.download_and_prepare()
    return b


def iter_documents(data_dir: str, root: str, corpus_hash: str, split: str):
    """Yield the text of every document of ``split`` read back through TFDS."""
    b = prepare(data_dir, root, corpus_hash)
    import tensorflow as tf
    tf.config.set_visible_devices([], "GPU")
    for ex in b.as_dataset(split=split, shuffle_files=False).as_numpy_iterator():
        yield ex["text"].decode("utf-8")
