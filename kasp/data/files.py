"""The GLUE files: which tasks and splits ship, and reading them (the shipped TSV files, a user's TSV file in a
task's layout, or the Hub when online) into pandas frames.

Torch-free, so that the app's pages and sidebar read the dev sets without importing torch;
:mod:`kasp.data.glue` re-exports everything here beside tokenisation and batches.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import pandas as pd

from kasp.ground import settings
from kasp.ground.errors import KaspError
from kasp.ground.resources import glue_dir
from kasp.spec.tasks import TASKS, GlueTask, get_task


def shipped_splits(data_dir: Path | None = None) -> dict[str, list[str]]:
    """Which splits of which tasks are present offline, e.g. {"sst2": ["train", "dev"], ...}."""
    root = Path(data_dir or glue_dir())
    out: dict[str, list[str]] = {}
    for t in TASKS.values():
        splits = [s for s, f in (("train", "train.tsv"), ("dev", t.dev_file)) if (root / t.folder / f).is_file()]
        if splits:
            out[t.name] = splits
    return out


def read_task_tsv(task: GlueTask, path: str | Path) -> pd.DataFrame:
    """Read a TSV in the task's GLUE column layout into columns ``text_a``, ``text_b``, ``label``.

    This is the reader of GLUE's own files (shipped in ``data/glue``): no quoting, a ``"`` is an
    ordinary character, one line per row. A user's file goes through :func:`read_user_tsv`, which
    also understands CSV quoting. Label ids follow the HF GLUE convention (``entailment`` = 0 for QNLI and RTE).

    Returns:
        DataFrame with N rows; ``label`` is int64 (classification) or float32 (STS-B); ``text_b``
        is None for single-sentence tasks.

    Raises:
        KaspError: naming the file, the line (1-based, counting the header) and what is wrong:
            missing file, wrong number of fields, missing columns, empty text, or a bad label.
    """
    path = Path(path)
    if not path.is_file():
        raise KaspError(f"data file not found: {path}")
    header = None if task.columns else 0
    try:
        df = pd.read_csv(path, sep="\t", quoting=csv.QUOTE_NONE, header=header, names=task.columns,
                         encoding=task.encoding, dtype=str, keep_default_na=False)
    except pd.errors.ParserError as e:
        raise KaspError(f"{path}: malformed TSV for task {task.name}: {e}. Expected tab-separated columns "
                        f"{_layout(task)}") from None
    except UnicodeDecodeError as e:
        raise KaspError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except pd.errors.EmptyDataError:
        raise KaspError(f"{path}: the file is empty; expected columns {_layout(task)}") from None
    first_line = 1 if task.columns else 2  # file line of row 0
    return _task_frame(task, path, df, [i + first_line for i in range(len(df))])


def _task_frame(task: GlueTask, path: Path, df: pd.DataFrame, lines: list[int]) -> pd.DataFrame:
    """Check a table of strings (the file's columns) and build ``text_a``, ``text_b``, ``label``.

    ``lines[i]`` is the file line where row i starts (for the error messages).
    """
    needed = [c for c in (task.text_a, task.text_b, task.label) if c]
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise KaspError(f"{path}: missing column(s) {missing} for task {task.name}; the file has "
                        f"{list(df.columns)}, expected {_layout(task)}")
    if len(df) == 0:
        raise KaspError(f"{path}: no data rows")
    df = df.reset_index(drop=True)
    for col in (task.text_a, task.text_b):
        if col:
            empty = df.index[df[col].str.strip() == ""]
            if len(empty):
                raise KaspError(f"{path}: line {lines[empty[0]]}: empty text in column {col!r}")
    raw = df[task.label].str.strip()
    if task.is_regression:
        labels = pd.to_numeric(raw, errors="coerce")
        bad = labels.index[labels.isna()]
        if len(bad):
            raise KaspError(f"{path}: line {lines[bad[0]]}: label {raw[bad[0]]!r} in column "
                            f"{task.label!r} is not a number")
        inf = labels.index[~np.isfinite(labels.to_numpy(dtype="float64"))]
        if len(inf):
            raise KaspError(f"{path}: line {lines[inf[0]]}: label {raw[inf[0]]!r} in column {task.label!r} is not "
                            "finite: gold scores must be finite numbers")
        if len(labels) > 1 and labels.nunique() == 1:
            raise KaspError(f"{path}: every gold score in column {task.label!r} is {raw[0]!r} (lines {lines[0]}-{lines[-1]}): "
                            "a correlation with constant gold scores is undefined (GLUE's test files hold -1 "
                            "placeholders); score a file with real gold scores, such as the dev set")
        labels = labels.astype("float32")
    else:
        allowed = list(task.label_names) if task.label_names else [str(i) for i in range(task.num_labels)]
        ok = raw.isin(allowed)
        if not ok.all():
            i = ok.index[~ok][0]
            raise KaspError(f"{path}: line {lines[i]}: label {raw[i]!r} in column {task.label!r} is "
                            f"not one of {allowed}")
        labels = raw.map({v: k for k, v in enumerate(allowed)}).astype("int64")
    return pd.DataFrame({
        "text_a": df[task.text_a].str.strip(),
        "text_b": df[task.text_b].str.strip() if task.text_b else None,
        "label": labels,
    })


class _BadTable(Exception):
    def __init__(self, line: int, msg: str):
        super().__init__(msg)
        self.line = line
        self.msg = msg


def _records_quoted(text: str) -> list[tuple[int, list[str]]]:
    """(first line, fields) of each record, read with CSV quoting (``csv`` module, strict)."""
    out: list[tuple[int, list[str]]] = []
    reader = csv.reader(io.StringIO(text, newline=""), delimiter="\t", quotechar='"', doublequote=True, strict=True)
    prev = 0
    try:
        for fields in reader:
            start, prev = prev + 1, reader.line_num
            if fields and any(f != "" for f in fields) or len(fields) > 1:
                out.append((start, fields))
    except csv.Error as e:
        if "field limit" in str(e):
            limit = csv.field_size_limit()
            raise _BadTable(prev + 1, f"the line is too long: a field of more than {limit:,} characters, the CSV "
                                      f"parser's limit (if the line is shorter, a quote opened on it is never "
                                      f"closed and runs on to the end of the file); split the text or close the "
                                      f"quote") from None
        raise _BadTable(reader.line_num or prev + 1, f"bad quoting ({e})") from None
    return out


def _records_plain(text: str) -> list[tuple[int, list[str]]]:
    """(line, fields) of each line, with no quoting (GLUE's own files: a '"' is an ordinary character)."""
    lines = text.split("\n")
    return [(i + 1, ln.rstrip("\r").split("\t")) for i, ln in enumerate(lines) if ln.rstrip("\r") != ""]


def _table(records: list[tuple[int, list[str]]], task: GlueTask) -> tuple[list[str], list[list[str]], list[int]]:
    """Header, rows and row start lines; every row must have the header's number of fields
    (trailing empty fields, from trailing tabs, are dropped first)."""
    if not records:
        raise _BadTable(1, "the file is empty")
    if task.columns:
        header = list(task.columns)
        body = records
    else:
        header = list(records[0][1])
        while header and header[-1].strip() == "":
            header.pop()
        header = [h.strip() for h in header]
        body = records[1:]
        named = [h for h in header if h]
        dup = sorted({h for h in named if named.count(h) > 1})
        if dup:
            raise _BadTable(records[0][0], f"the header names column(s) {dup} more than once")
    n = len(header)
    rows, lines = [], []
    for line, fields in body:
        fields = list(fields)
        while len(fields) > n and fields[-1] == "":
            fields.pop()
        if len(fields) != n:
            raise _BadTable(line, f"{len(fields)} tab-separated field(s) where the "
                                  f"{'header' if not task.columns else 'layout'} has {n} ({header})")
        rows.append(fields)
        lines.append(line)
    return header, rows, lines


def decode_text(raw: bytes, path: str | Path) -> str:
    """A user's text file as str: UTF-8, with or without a byte-order mark.

    Raises:
        KaspError: for UTF-16 or UTF-32 (a byte-order mark, or NUL bytes between ASCII letters),
            naming the encoding and the fix; for other non-UTF-8 bytes, naming the byte offset and
            the likely encoding (Latin-1 / Windows-1252) with the fix.
    """
    fix = "save it as UTF-8 (in a spreadsheet: \"Unicode (UTF-8)\"; on a shell: iconv -f {enc} -t UTF-8 {name} > {name}.utf8)"
    name = Path(path).name
    for bom, enc in ((b"\xff\xfe\x00\x00", "UTF-32LE"), (b"\x00\x00\xfe\xff", "UTF-32BE"),
                     (b"\xff\xfe", "UTF-16LE"), (b"\xfe\xff", "UTF-16BE")):
        if raw.startswith(bom):
            raise KaspError(f"{path}: the file is {enc} text (it starts with a {enc} byte-order mark), not UTF-8: "
                            + fix.format(enc=enc[:6], name=name))
    head = raw[:4096]
    if len(head) >= 4 and head.count(b"\x00") >= len(head) // 4:
        enc = "UTF-16LE" if head[1:2] == b"\x00" else "UTF-16BE"
        raise KaspError(f"{path}: the file looks like {enc} text without a byte-order mark (NUL bytes between "
                        "letters), not UTF-8: " + fix.format(enc=enc, name=name))
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise KaspError(f"{path}: not UTF-8 text ({e.reason}, byte 0x{raw[e.start]:02x} at offset {e.start}); if it "
                        "was saved as Latin-1 or Windows-1252, " + fix.format(enc="CP1252", name=name)) from None


def read_user_tsv(task: GlueTask, path: str | Path) -> pd.DataFrame:
    """Read a user's labelled TSV (``kasp evaluate --data``, the app's Evaluate) in the task's GLUE layout.

    Quoting rule: the file is read as tab-separated CSV with standard quoting, as written by
    pandas ``to_csv(sep="\\t")``, spreadsheets and Python's ``csv`` module: a field that starts with
    ``"`` is quoted, may hold tabs and line breaks, and ``""`` inside it is one ``"``. GLUE's own
    files are not quoted (a ``"`` is an ordinary character, e.g. at the start of a quotation); a
    file that cannot be read with quoting but whose every line has the header's field count read
    without quoting is read that way, so a copy of a GLUE file scores exactly as the shipped one.
    When a file reads completely both ways with a different number of rows, the reading whose
    every row is valid (texts present, labels known) is used; if both are, the file is refused as
    ambiguous. Line ends may be LF or CRLF; a UTF-8 byte-order mark is ignored; trailing tabs are
    ignored. Every row must have as many fields as the header (for CoLA, the four header-less GLUE
    columns), so an extra leading column is refused unless the header names it (then it is just
    an unused column: columns are taken by name, never by position).

    Returns:
        as :func:`read_task_tsv`.

    Raises:
        KaspError: naming the file, the line and the problem (quoting, field count, header,
            missing columns, empty text, bad label), or a file that is not UTF-8.
    """
    path = Path(path)
    if not path.is_file():
        raise KaspError(f"data file not found: {path}")
    text = decode_text(path.read_bytes(), path)
    if not text.strip():
        raise KaspError(f"{path}: the file is empty; expected columns {_layout(task)}")
    quoted = plain = None
    q_err: _BadTable | None = None
    try:
        quoted = _table(_records_quoted(text), task)
    except _BadTable as e:
        q_err = e
    if '"' not in text:  # no quote anywhere: both readings are the same table
        plain = quoted
    else:
        try:
            plain = _table(_records_plain(text), task)
        except _BadTable:
            plain = None
    if quoted is not None and plain is not None and len(quoted[1]) != len(plain[1]):
        # both readings are complete tables: keep the one whose rows are all valid (texts, labels)
        frames = []
        for table in (quoted, plain):
            try:
                frames.append(_task_frame(task, path, pd.DataFrame(table[1], columns=table[0], dtype=str), table[2]))
            except KaspError:
                frames.append(None)
        if frames[0] is not None and frames[1] is None:
            return frames[0]
        if frames[1] is not None and frames[0] is None:
            return frames[1]
        if frames[0] is not None:
            first = next((ln for ln, ln2 in zip(quoted[2], plain[2]) if ln != ln2), quoted[2][-1])
            raise KaspError(f"{path}: line {first}: ambiguous quoting: read with CSV quoting the file has "
                            f"{len(quoted[1])} valid rows, read without it {len(plain[1])}. Quote every field that "
                            "holds a tab, a line break or a leading \" (as pandas to_csv does), or remove the quotes.")
    table = quoted if quoted is not None else plain
    if table is None:
        assert q_err is not None
        raise KaspError(f"{path}: line {q_err.line}: malformed TSV for task {task.name}: {q_err.msg}. Expected "
                        f"tab-separated columns {_layout(task)}")
    header, rows, lines = table
    df = pd.DataFrame(rows, columns=header, dtype=str)
    return _task_frame(task, path, df, lines)


def _layout(task: GlueTask) -> str:
    if task.columns:
        return f"{list(task.columns)} with no header row"
    cols = [c for c in (task.text_a, task.text_b, task.label) if c]
    return f"a header row naming at least {cols}"


def load_split(task: GlueTask | str, split: str, data_dir: str | Path | None = None) -> pd.DataFrame:
    """Load ``split`` ("train" or "dev") of a GLUE task: shipped copy first, else the Hub.

    Raises:
        KaspError: if the split is neither shipped nor loadable (offline), naming the shipped tasks.
    """
    task = get_task(task) if isinstance(task, str) else task
    if split not in ("train", "dev"):
        raise KaspError(f"split must be train or dev, got {split!r} (GLUE test sets have no labels)")
    root = Path(data_dir or glue_dir())
    path = root / task.folder / ("train.tsv" if split == "train" else task.dev_file)
    if path.is_file():
        return read_task_tsv(task, path)
    return _load_from_hub(task, split, root)


def _load_from_hub(task: GlueTask, split: str, root: Path) -> pd.DataFrame:
    shipped = ", ".join(f"{k} ({'+'.join(v)})" for k, v in shipped_splits(root).items())
    offline_msg = (f"GLUE {task.name} {split} is not shipped with KASP and could not be loaded from the Hub "
                   f"(no network, or HF_HUB_OFFLINE=1). Shipped offline: {shipped}.")
    if settings.get().hub_offline or settings.get().datasets_offline:
        raise KaspError(offline_msg)
    try:
        import datasets

        ds = datasets.load_dataset("nyu-mll/glue", task.name, split="train" if split == "train" else task.hub_dev)
    except Exception as e:  # network errors come in many types
        raise KaspError(f"{offline_msg} ({type(e).__name__}: {str(e)[:200]})") from None
    a, b = task.hub_text
    df = ds.to_pandas()
    return pd.DataFrame({"text_a": df[a], "text_b": df[b] if b else None,
                         "label": df["label"].astype("float32" if task.is_regression else "int64")})
