"""The Materials Project data as a protostructure dataset.

``build_dataset`` reads the shared CSV files (one CIF per row), detects each structure's
protostructure, checks that its label round-trips through :class:`Protostructure`, and writes a
cached table with a deterministic train/val/test split by material id. ``load_dataset`` reads
that cache back. The data folder is found from an explicit path, ``$WYCKOFFDIFF_DATA_DIR``, or
``../shared/data`` beside a checkout, in that order.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import math
import os
import warnings
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .files import file_sha256
from .exceptions import DataNotFoundError, ProtostructureError
from .symmetry import Protostructure, structure_label, wyckoff_positions

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    'DATA_DIR_VARIABLE',
    'DATASET_SHARE',
    'DatasetReport',
    'MAIN_FILE',
    'EXTRA_FILE',
    'build_dataset',
    'dataset_hash',
    'default_dataset_path',
    'find_data_dir',
    'frame_sha256',
    'load_dataset',
    'mix_rows',
    'protostructure_columns',
    'protostructure_of',
    'spacegroup_counts',
    'split_of',
    'training_spacegroup_counts',
    'training_spacegroups',
    'write_dataset',
]

DATA_DIR_VARIABLE = 'WYCKOFFDIFF_DATA_DIR'
CACHE_DIR_VARIABLE = 'WYCKOFFDIFF_CACHE_DIR'
MAIN_FILE = 'mp_structures.csv.gz'
EXTRA_FILE = 'mp_structures_extra.csv.gz'
SPLIT_FRACTIONS = {'test': 0.1, 'val': 0.1}
"""The rest is ``train``; assignment hashes the material id, so it never depends on row order."""
TRAINING_SPACEGROUPS_FILE = 'training_spacegroups.json'
DATASET_SHARE = 0.8
"""Default share of the dataset's rows among the training rows when fine-tuning on new rows (:func:`mix_rows`): four
real crystals per new row, so the model does not forget real crystals; no measurement behind the number."""
COLUMNS = [
    'material_id',
    'label',
    'spacegroup',
    'chemsys',
    'num_atoms',
    'nsites',
    'formation_energy_per_atom',
    'e_above_hull',
    'split',
    'source',
    'wyckoff_matrix',
]


def find_data_dir(data_dir: str | Path | None = None) -> Path:
    """Locate the folder holding ``mp_structures.csv.gz``, or say exactly how to provide it."""
    if data_dir is not None:
        candidates = [Path(data_dir)]
    elif os.environ.get(DATA_DIR_VARIABLE):
        candidates = [Path(os.environ[DATA_DIR_VARIABLE])]
    else:
        checkout = Path(__file__).resolve().parents[1]
        candidates = [Path.cwd() / '..' / 'shared' / 'data', checkout / '..' / 'shared' / 'data']
    for candidate in candidates:
        if (candidate / MAIN_FILE).is_file():
            return candidate.resolve()
    looked = ', '.join(str(c.resolve()) for c in candidates)
    raise DataNotFoundError(
        f'no {MAIN_FILE} found (looked in: {looked}). Put the shared Materials Project data folder '
        f'beside the checkout as ../shared/data, or pass --data-dir DIR, or set {DATA_DIR_VARIABLE}=DIR.'
    )


def split_of(material_id: str) -> str:
    """Deterministic split of a material: the same id lands in the same split on every machine."""
    bucket = int(hashlib.sha256(material_id.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    if bucket < SPLIT_FRACTIONS['test']:
        return 'test'
    if bucket < SPLIT_FRACTIONS['test'] + SPLIT_FRACTIONS['val']:
        return 'val'
    return 'train'


def default_dataset_path(data_dir: Path, include_extra: bool = False) -> Path:
    """Cache path keyed by the input files' content, so new data never reuses a stale cache."""
    inputs = [data_dir / MAIN_FILE] + ([data_dir / EXTRA_FILE] if include_extra else [])
    key = hashlib.sha256(''.join(file_sha256(p) for p in inputs).encode()).hexdigest()[:12]
    cache = Path(os.environ.get(CACHE_DIR_VARIABLE) or Path.home() / '.cache' / 'aiida-wyckoffdiff')
    return cache / f'protostructures-{key}.jsonl.gz'


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def protostructure_columns(label: str) -> dict[str, Any]:
    """The dataset's protostructure columns of a label from :func:`structure_label` (``label``, ``spacegroup``,
    ``chemsys``, ``num_atoms``, ``wyckoff_matrix``): one encoding for MP crystals and the workflow's own relaxations.

    :raises ProtostructureError: the label does not round-trip through :class:`Protostructure`.
    """
    from pymatgen.core.periodic_table import Element

    protostructure = Protostructure.from_label(label)
    if protostructure.label != label:
        raise ProtostructureError(f'label {label} does not round-trip (read back as {protostructure.label})')
    row_of = {position.letter: index for index, position in enumerate(protostructure.info.positions)}
    return {
        'label': label,
        'spacegroup': protostructure.spacegroup,
        'chemsys': protostructure.chemsys,
        'num_atoms': protostructure.num_atoms,
        # Sparse Wyckoff element matrix: [position index (a=0, b=1, ...), atomic number, orbits].
        'wyckoff_matrix': [[row_of[letter], Element(el).Z, n] for el, letter, n in protostructure.sites],
    }


def _protostructure_row(record: dict[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
    """One CSV row -> one dataset row, or ``None`` and the reason it was dropped."""
    from pymatgen.core import Structure

    try:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')  # CIF parser chatter about rounding and occupancies
            structure = Structure.from_str(record['cif'], fmt='cif')
    except Exception:  # noqa: BLE001 - pymatgen raises many kinds for bad CIFs; the reason is what counts
        return None, 'CIF does not parse'
    if _missing(record['formation_energy_per_atom']):
        return None, 'no formation energy'
    try:
        label = structure_label(structure)
    except ProtostructureError:
        return None, 'symmetry detection failed'
    try:
        columns = protostructure_columns(label)
    except ProtostructureError:
        return None, 'label does not round-trip'
    e_above_hull = record['e_above_hull']
    return {
        'material_id': record['material_id'],
        **{key: columns[key] for key in ('label', 'spacegroup', 'chemsys', 'num_atoms')},
        'nsites': int(record['nsites']),
        'formation_energy_per_atom': float(record['formation_energy_per_atom']),
        'e_above_hull': None if _missing(e_above_hull) else float(e_above_hull),
        'split': split_of(record['material_id']),
        'source': record['source'],
        'wyckoff_matrix': columns['wyckoff_matrix'],
    }, None


@dataclass
class DatasetReport:
    """What a build kept and dropped, and where it wrote the table."""

    path: Path
    rows_read: int = 0
    rows_kept: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    splits: dict[str, int] = field(default_factory=dict)
    spacegroup_disagreements: int = 0
    """Rows whose detected space group differs from the one the source gives (kept: detection is ours)."""

    @property
    def round_trip_fraction(self) -> float:
        """Share of parsed structures whose label survives Structure -> label -> Protostructure -> label."""
        unread = ('CIF does not parse', 'no formation energy')
        failed = ('symmetry detection failed', 'label does not round-trip')
        parsed = self.rows_read - sum(self.dropped.get(reason, 0) for reason in unread)
        return (parsed - sum(self.dropped.get(reason, 0) for reason in failed)) / max(parsed, 1)

    def summary(self) -> str:
        lines = [f'rows read: {self.rows_read}', f'rows kept: {self.rows_kept}']
        lines += [f'  dropped ({reason}): {count}' for reason, count in sorted(self.dropped.items())]
        lines.append(f'round-trip Structure -> label -> Protostructure -> label: {self.round_trip_fraction:.2%}')
        lines.append(f'space group differs from the source value: {self.spacegroup_disagreements}')
        lines.append('splits: ' + ', '.join(f'{name} {count}' for name, count in sorted(self.splits.items())))
        lines.append(f'written to {self.path}')
        return '\n'.join(lines)


def build_dataset(
    data_dir: str | Path | None = None,
    include_extra: bool = False,
    output: str | Path | None = None,
    processes: int | None = None,
    limit: int | None = None,
    progress: bool = True,
) -> DatasetReport:
    """Turn the shared CSV files into the cached protostructure table and report what was kept.

    :param include_extra: add ``mp_structures_extra.csv.gz`` (rows without a formation energy are dropped).
    :param output: where to write; defaults to :func:`default_dataset_path`.
    :param limit: read only the first rows of each file (quick looks, tests).
    """
    import pandas as pd
    from tqdm.auto import tqdm

    folder = find_data_dir(data_dir)
    files = [folder / MAIN_FILE] + ([folder / EXTRA_FILE] if include_extra else [])
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise DataNotFoundError(f'missing data file(s): {", ".join(missing)}')
    frame = pd.concat([pd.read_csv(f, nrows=limit) for f in files], ignore_index=True)
    path = Path(output) if output is not None else default_dataset_path(folder, include_extra)
    report = DatasetReport(path=path, rows_read=len(frame))
    records = frame.to_dict('records')
    processes = max(1, min(processes or os.cpu_count() or 1, len(records)))
    dropped: Counter[str] = Counter()
    rows = []
    with ProcessPoolExecutor(max_workers=processes) as pool:
        outcomes = pool.map(_protostructure_row, records, chunksize=max(1, min(200, len(records) // (8 * processes))))
        for record, (row, reason) in tqdm(
            zip(records, outcomes, strict=True), total=len(records), desc='protostructures', disable=not progress
        ):
            if row is None:
                dropped[reason or 'unknown'] += 1
                continue
            report.spacegroup_disagreements += int(row['spacegroup'] != record['spacegroup'])
            rows.append(row)
    table = pd.DataFrame(rows, columns=COLUMNS)
    report.rows_kept = len(table)
    report.dropped = dict(dropped)
    report.splits = dict(Counter(table['split']))
    write_dataset(table, path)
    return report


def write_dataset(table: pd.DataFrame, path: str | Path) -> Path:
    """Write rows as :func:`load_dataset` reads them (gzipped JSON lines), through a temporary name."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + '.partial')
    text = table.to_json(orient='records', lines=True, double_precision=15)
    # No time or file name in the gzip header: the same rows always give the same file, so the dataset_hash a
    # checkpoint records (and `--resume` checks) survives rebuilding the cache.
    partial.write_bytes(gzip.compress(text.encode(), mtime=0))
    partial.replace(path)  # never leave a half-written cache where load_dataset would find it
    return path


def load_dataset(path: str | Path | None = None, data_dir: str | Path | None = None) -> pd.DataFrame:
    """Read a dataset written by :func:`build_dataset` (by default the cache for the found data folder)."""
    import pandas as pd

    if path is None:
        path = default_dataset_path(find_data_dir(data_dir))
    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(f'no protostructure dataset at {path}: run `wyckoffdiff data build` first')
    try:
        return pd.read_json(
            path, orient='records', lines=True, compression='gzip', dtype={'material_id': str}, precise_float=True
        )
    except (ValueError, EOFError, OSError) as exception:
        raise DataNotFoundError(f'{path} is not a readable dataset ({exception}); rebuild it with `wyckoffdiff data build`') from None


def dataset_hash(path: str | Path) -> str:
    """sha256 of a dataset file: what a checkpoint records to say which data trained it."""
    return file_sha256(Path(path))


def spacegroup_counts(table: pd.DataFrame, split: str = 'train') -> dict[int, int]:
    """Rows per space group in one split, most frequent first."""
    counts = table.loc[table['split'] == split, 'spacegroup'].value_counts()
    return {int(number): int(count) for number, count in counts.items()}


def training_spacegroup_counts() -> dict[int, int]:
    """Training crystals per space group, most frequent first, from the file shipped with the package (which records
    the dataset hash it came from)."""
    from importlib import resources

    document = json.loads(resources.files('aiida_wyckoffdiff').joinpath('resources', TRAINING_SPACEGROUPS_FILE).read_text())
    return {int(number): int(count) for number, count in document['counts'].items()}


def training_spacegroups(limit: int | None = None) -> list[int]:
    """Space groups of the training data, most frequent first: the paper's scan (``spacegroup_choice: top20``)."""
    return list(training_spacegroup_counts())[:limit]


def protostructure_of(row: Any) -> Protostructure:
    """The :class:`Protostructure` of a dataset row (from its sparse Wyckoff element matrix)."""
    from pymatgen.core.periodic_table import Element

    positions = wyckoff_positions(int(row['spacegroup']))
    return Protostructure(
        int(row['spacegroup']),
        tuple((Element.from_Z(z).symbol, positions[index].letter, n) for index, z, n in row['wyckoff_matrix']),
    )



def frame_sha256(frame: pd.DataFrame) -> str:
    """sha256 of rows as :func:`write_dataset` serializes them: the dataset hash of rows that are no file."""
    return hashlib.sha256(frame.to_json(orient='records', lines=True, double_precision=15).encode()).hexdigest()


def mix_rows(
    dataset: pd.DataFrame, rows: pd.DataFrame, *, dataset_share: float = DATASET_SHARE, val_rows: int | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """New training rows with enough of the dataset's ``train`` rows that those make ``dataset_share`` of the
    training rows (so fine-tuning on new rows does not forget real crystals), and ``val_rows`` of its ``val`` rows
    (all where ``None``) to validate on. Every new row counts as ``train``; the draws are seeded.

    :param dataset_share: share of the dataset's rows among the training rows, from 0 (new rows only) below 1.
    """
    import pandas as pd

    if not 0 <= dataset_share < 1:
        raise ValueError(f'dataset_share must be from 0 to below 1, not {dataset_share}')
    train = dataset[(dataset['split'] == 'train') & dataset['e_above_hull'].notna()]
    val = dataset[(dataset['split'] == 'val') & dataset['e_above_hull'].notna()]
    wanted = min(len(train), math.ceil(len(rows) * dataset_share / (1 - dataset_share)))
    if val_rows is not None:
        val = val.sample(n=min(val_rows, len(val)), random_state=seed)
    parts = [rows.assign(split='train'), train.sample(n=wanted, random_state=seed), val]
    return pd.concat(parts, ignore_index=True)
