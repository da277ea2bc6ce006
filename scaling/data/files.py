"""Reading a corpus of files: globs, the manifest, work units and the document readers.

Formats (by extension, optionally compressed ``.gz``, or ``.zst`` when ``zstandard`` is installed):

* ``.txt`` / ``.text`` / ``.md`` - one document per file, or one per line (option ``txt_lines``);
* ``.jsonl`` / ``.ndjson`` / ``.json`` - JSON Lines, one object per line, text in ``text_field``;
* ``.parquet`` - the ``text_field`` column (read a row-group batch at a time).

A corpus is planned into **units** of about ``unit_bytes`` of input: byte ranges of large
uncompressed line files (cut after a newline), groups of small files, a whole compressed file,
or a run of parquet row groups.  A unit is the work one tokenizer process (or Ray task) does;
units are processed independently and concatenated in plan order, so the result does not
depend on how many processes ran.

Readers stream a unit's documents as ``(text, where)`` and raise :class:`ConfigError` naming
``file:line`` and the fix for each kind of bad input.  Text that is not valid UTF-8 is decoded
with U+FFFD replacements and counted (the caller warns).
"""

from __future__ import annotations

import dataclasses
import glob
import gzip
import io
import json
import os

from scaling.config import ConfigError

TXT_EXT = (".txt", ".text", ".md")
JSONL_EXT = (".jsonl", ".ndjson", ".json")
PARQUET_EXT = (".parquet",)
CODECS = {".gz": "gz", ".zst": "zst", ".zstd": "zst"}
DEFAULT_UNIT_BYTES = 32 << 20
FIX_SKIP = "fix the line or pass --skip-bad-lines (data.options skip_bad_lines) to skip and count such lines"


@dataclasses.dataclass(frozen=True)
class FileEntry:
    path: str      # absolute
    rel: str       # relative to the corpus root (the common directory of all files)
    fmt: str       # txt | jsonl | parquet
    codec: str | None
    size: int
    mtime_ns: int
    role: str      # data | validation


@dataclasses.dataclass(frozen=True)
class Piece:
    file: int                 # index into the file list
    start: int = 0            # byte range of an uncompressed line file
    end: int | None = None
    row_groups: tuple = ()    # parquet


def classify(path: str) -> tuple[str, str | None]:
    """(format, codec) of a corpus file from its name; ConfigError for anything else."""
    name = os.path.basename(path).lower()
    root, ext = os.path.splitext(name)
    codec = CODECS.get(ext)
    if codec:
        root, ext = os.path.splitext(root)
    for fmt, exts in (("txt", TXT_EXT), ("jsonl", JSONL_EXT), ("parquet", PARQUET_EXT)):
        if ext in exts:
            if fmt == "parquet" and codec:
                break
            return fmt, codec
    raise ConfigError(f"data: {path}: unsupported file type; corpus files must end in .txt/.md (one document "
                      f"per file or line), .jsonl/.json (JSON Lines) or .parquet, optionally .gz/.zst; "
                      f"narrow the glob (e.g. dir/*.jsonl) to leave this file out")


def split_globs(value) -> list[str]:
    """A glob option as a list: a tuple/list of globs, or one string with comma-separated globs."""
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        out = [str(v) for v in value]
    else:
        out = [g for g in str(value).split(",")]
    return [g.strip() for g in out if g.strip()]


def expand(globs: list[str], flag: str) -> list[str]:
    """Sorted absolute paths matched by each glob (a directory means every file under it)."""
    paths: list[str] = []
    for g in globs:
        if "://" in g:
            raise ConfigError(f"{flag} {g!r}: text files must be local or on a shared file system; for a "
                              f"cloud bucket use a prepared TFDS dataset (--task tfds:NAME) or copy the files")
        g = os.path.expanduser(g)
        if os.path.isdir(g):
            hits = [os.path.join(d, f) for d, _, fs in os.walk(g) for f in fs if not f.startswith(".")]
        else:
            hits = [h for h in glob.glob(g, recursive=True) if os.path.isfile(h)]
        if not hits:
            raise ConfigError(f"{flag} {g!r}: matches no files (relative to {os.getcwd()}); check the path "
                              f"or quote the glob so the shell does not expand it")
        for h in sorted(os.path.abspath(h) for h in hits):
            if h not in paths:
                paths.append(h)
    return paths


def list_files(data_globs: list[str], validation_globs: list[str]) -> list[FileEntry]:
    data = expand(data_globs, "--data")
    val = expand(validation_globs, "--validation-data") if validation_globs else []
    both = set(data) & set(val)
    if both:
        raise ConfigError(f"--validation-data: {sorted(both)[0]} is also in --data; the validation files "
                          f"must be disjoint from the training files")
    allp = data + val
    root = os.path.commonpath([os.path.dirname(p) for p in allp])
    out = []
    for role, paths in (("data", data), ("validation", val)):
        for p in paths:
            fmt, codec = classify(p)
            st = os.stat(p)
            if st.st_size == 0:
                raise ConfigError(f"data: {p} is empty; remove it from the glob or delete it")
            if codec == "zst":
                _zstd()
            out.append(FileEntry(p, os.path.relpath(p, root), fmt, codec, st.st_size, st.st_mtime_ns, role))
    return out


def _zstd():
    try:
        import zstandard
    except ImportError:
        raise ConfigError("data: .zst files need the zstandard package; pip install zstandard "
                          "(or decompress the files)") from None
    return zstandard


def plan_units(files: list[FileEntry], *, txt_lines: bool, unit_bytes: int = DEFAULT_UNIT_BYTES) -> list[list[Piece]]:
    """Cut the corpus into units of about ``unit_bytes`` of input (see the module docstring)."""
    units: list[list[Piece]] = []
    group: list[Piece] = []
    group_bytes = 0

    def flush():
        nonlocal group, group_bytes
        if group:
            units.append(group)
        group, group_bytes = [], 0

    for i, f in enumerate(files):
        if group and files[group[0].file].role != f.role:
            flush()
        lines = f.fmt == "jsonl" or (f.fmt == "txt" and txt_lines)
        if f.fmt == "parquet":
            import pyarrow.parquet as pq
            try:
                md = pq.ParquetFile(f.path).metadata
            except Exception as e:  # noqa: BLE001 - pyarrow raises several types for a bad file
                raise ConfigError(f"data: {f.path}: not a readable parquet file ({type(e).__name__}); "
                                  f"remove it from the glob or rewrite it") from None
            flush()
            rgs: list[int] = []
            acc = 0
            for r in range(md.num_row_groups):
                rgs.append(r)
                acc += md.row_group(r).total_byte_size
                if acc >= unit_bytes:
                    units.append([Piece(i, row_groups=tuple(rgs))])
                    rgs, acc = [], 0
            if rgs:
                units.append([Piece(i, row_groups=tuple(rgs))])
        elif lines and f.codec is None and f.size > unit_bytes:
            flush()
            start = 0
            with open(f.path, "rb") as fh:
                while start < f.size:
                    cut = start + unit_bytes
                    if cut >= f.size:
                        end = f.size
                    else:
                        fh.seek(cut - 1)
                        fh.readline()
                        end = min(fh.tell(), f.size)
                    units.append([Piece(i, start, end)])
                    start = end
        else:
            group.append(Piece(i))
            group_bytes += f.size
            if group_bytes >= unit_bytes:
                flush()
    flush()
    return units


class Counts:
    """Per-unit counters of what the readers skipped or repaired."""

    def __init__(self):
        self.skipped_empty = 0
        self.bad_lines = 0
        self.invalid_utf8_docs = 0
        self.replaced_chars = 0
        self.first_bad: str | None = None
        self.first_invalid: str | None = None

    def as_dict(self) -> dict:
        return dict(vars(self))


def _decode(b: bytes, counts: Counts, where) -> str:
    try:
        return b.decode("utf-8")
    except UnicodeDecodeError:
        t = b.decode("utf-8", "replace")
        counts.invalid_utf8_docs += 1
        counts.replaced_chars += t.count("\ufffd") - b.count(b"\xef\xbf\xbd")
        counts.first_invalid = counts.first_invalid or where()
        return t


def _clean(t: str, counts: Counts, where) -> str:
    """Lone surrogates (from JSON ``\\ud800`` escapes) are not UTF-8: replace and count them."""
    try:
        t.encode("utf-8")
        return t
    except UnicodeEncodeError:
        fixed = t.encode("utf-8", "replace").decode("utf-8")
        counts.invalid_utf8_docs += 1
        counts.replaced_chars += sum(1 for c in t if 0xD800 <= ord(c) <= 0xDFFF)
        counts.first_invalid = counts.first_invalid or where()
        return fixed


def _open(f: FileEntry):
    if f.codec == "gz":
        return gzip.open(f.path, "rb")
    if f.codec == "zst":
        return io.BufferedReader(_zstd().ZstdDecompressor().stream_reader(open(f.path, "rb"), closefd=True))
    return open(f.path, "rb", buffering=1 << 20)


def _check_binary(head: bytes, path: str) -> None:
    i = head.find(b"\0")
    if i >= 0:
        raise ConfigError(f"data: {path} looks binary (NUL byte at offset {i}), not text; remove it from the "
                          f"glob or narrow the glob to text files")


def _line_no(path: str, start: int, local: int) -> int:
    """1-based line number in the file of line ``local`` (1-based) of a piece starting at ``start``."""
    if start == 0:
        return local
    n = 0
    with open(path, "rb") as fh:
        left = start
        while left > 0:
            b = fh.read(min(left, 1 << 22))
            if not b:
                break
            n += b.count(b"\n")
            left -= len(b)
    return n + local


def read_piece(f: FileEntry, piece: Piece, *, text_field: str, txt_lines: bool, skip_bad_lines: bool,
               counts: Counts):
    """Yield the documents (str) of one piece of a file, in order."""
    if f.fmt == "parquet":
        yield from _read_parquet(f, piece, text_field, skip_bad_lines, counts)
        return
    try:
        fh = _open(f)
        with fh:
            if piece.start:
                fh.seek(piece.start)
            if f.fmt == "txt" and not txt_lines:
                data = fh.read()
                _check_binary(data[:8192], f.path)
                t = _decode(data, counts, lambda: f.path)
                if t:
                    yield t
                else:
                    counts.skipped_empty += 1
                return
            pos, n = piece.start, 0
            end = piece.end
            first = True
            for line in fh:
                if end is not None and pos >= end:
                    break
                pos += len(line)
                n += 1
                if first and piece.start == 0:
                    _check_binary(line[:8192], f.path)
                    first = False
                where = (lambda n=n: f"{f.path}:{_line_no(f.path, piece.start, n)}")
                if f.fmt == "txt":
                    t = _decode(line.rstrip(b"\r\n"), counts, where)
                    if t:
                        yield t
                    else:
                        counts.skipped_empty += 1
                    continue
                if not line.strip():
                    continue  # blank lines (e.g. a trailing newline) are not records
                t = _json_text(line, text_field, skip_bad_lines, counts, where)
                if t is None:
                    continue
                if t:
                    yield _clean(t, counts, where)
                else:
                    counts.skipped_empty += 1
    except (OSError, EOFError) as e:
        if isinstance(e, FileNotFoundError):
            raise ConfigError(f"data: {f.path} disappeared while reading; re-run once the corpus is stable") from None
        raise ConfigError(f"data: {f.path}: cannot read ({type(e).__name__}: {str(e)[:100]}); "
                          f"check the file is a valid {f.codec or f.fmt} file") from None
    except Exception as e:  # zstandard raises its own error type for corrupt frames
        if type(e).__name__ == "ZstdError":
            raise ConfigError(f"data: {f.path}: not a valid zstd file ({str(e)[:100]}); re-compress it") from None
        raise


def _json_text(line: bytes, field: str, skip: bool, counts: Counts, where):
    """The text of one JSON line, or None for a bad line that is skipped."""
    def bad(msg):
        if not skip:
            raise ConfigError(f"{where()}: {msg}")
        counts.bad_lines += 1
        counts.first_bad = counts.first_bad or f"{where()}: {msg}"
        return None

    s = _decode(line, counts, where)
    try:
        obj = json.loads(s)
    except ValueError as e:
        if s.lstrip().startswith("[") and counts.bad_lines == 0:
            return bad(f"not a JSON object per line (this looks like a JSON array); convert the file to JSON "
                       f"Lines (one object per line)")
        return bad(f"not valid JSON ({getattr(e, 'msg', e)}); {FIX_SKIP}")
    if not isinstance(obj, dict):
        return bad(f"a JSON {type(obj).__name__}, not an object (JSON Lines hold one object per line); {FIX_SKIP}")
    if field not in obj:
        keys = ", ".join(sorted(obj)[:8])
        return bad(f"field {field!r} missing (keys: {keys}); pass --text-field NAME (data.options text_field), "
                   f"or --skip-bad-lines")
    t = obj[field]
    if not isinstance(t, str):
        return bad(f"field {field!r} is a JSON {type(t).__name__}, not a string; pass --text-field NAME "
                   f"naming the text field, or --skip-bad-lines")
    return t


def _read_parquet(f: FileEntry, piece: Piece, field: str, skip: bool, counts: Counts):
    import pyarrow as pa
    import pyarrow.parquet as pq
    pf = pq.ParquetFile(f.path)
    schema = pf.schema_arrow
    if field not in schema.names:
        raise ConfigError(f"data: {f.path}: no column {field!r} (columns: {', '.join(schema.names[:8])}); "
                          f"pass --text-field NAME (data.options text_field)")
    typ = schema.field(field).type
    if not (pa.types.is_string(typ) or pa.types.is_large_string(typ)):
        raise ConfigError(f"data: {f.path}: column {field!r} is {typ}, not a string; pass --text-field NAME "
                          f"naming the text column")
    row = sum(pf.metadata.row_group(r).num_rows for r in range(piece.row_groups[0])) if piece.row_groups else 0
    for batch in pf.iter_batches(batch_size=4096, columns=[field], row_groups=list(piece.row_groups)):
        for t in batch.column(0).to_pylist():
            row += 1
            if t is None:
                if not skip:
                    raise ConfigError(f"{f.path}: row {row}: {field!r} is null; pass --skip-bad-lines to skip "
                                      f"and count null rows")
                counts.bad_lines += 1
                counts.first_bad = counts.first_bad or f"{f.path}: row {row}: null"
                continue
            if t:
                yield _clean(t, counts, lambda: f"{f.path}: row {row}")
            else:
                counts.skipped_empty += 1
