"""``wyckoffdiff.finetune``: fine-tune a checkpoint on rows from the workflow's own relaxations, in the graph.

The rows (:mod:`aiida_wyckoffdiff.relaxation_rows`) are mixed with a share of the dataset's training rows, so the
model learns the energy contrast of its own structures without forgetting real crystals, and the checkpoint is
trained further by :func:`aiida_wyckoffdiff.model.training.finetune`. The rows' sources (each run's ``table`` and the
relaxed structures the rows came from) are inputs, so the new ``CheckpointData`` links back to the relaxations, and
``wyckoffdiff lineage`` of a structure sampled from it reaches them.
"""

from __future__ import annotations

from typing import Any

from aiida import orm
from aiida.engine import calcfunction

from ..data import DATASET_SHARE
from ..nodes import CheckpointData

__all__ = ['FINETUNE_DEFAULTS', 'finetune_inputs', 'finetune_on_rows', 'validate_finetune_settings']

FINETUNE_DEFAULTS: dict[str, Any] = {
    'epochs': 1,  # beyond the checkpoint's own, each over the mixed rows only: seconds, not the full dataset's ~40 s
    'dataset_share': DATASET_SHARE,  # of the training rows, from the dataset: the new rows never outweigh real crystals
    'val_rows': 256,  # validation rows drawn from the dataset's val split (all of them where None)
    'learning_rate': None,  # None: the checkpoint's fine-tuning learning rate
    'seed': 0,
    'threads': 1,
    'device': None,  # None: CUDA where present, else the CPU
}
"""Settings of :func:`finetune_on_rows`; a ``settings`` input changes any of them."""
TABLE_PREFIX = 'table_'
RELAXED_PREFIX = 'relaxed_'
SOURCE_COLUMNS = ('material_id', 'structure_pk', 'table_pk', 'run_pk')
"""Columns that name nodes, not content: in the rows input, the names of the inputs they point to replace them."""


def validate_finetune_settings(value: orm.Dict | None, _: object) -> str | None:
    if value is None:
        return None
    unknown = set(value.get_dict()) - FINETUNE_DEFAULTS.keys()
    if unknown:
        return f'unknown fine-tuning settings {", ".join(sorted(unknown))}; valid: {", ".join(FINETUNE_DEFAULTS)}'
    settings = {**FINETUNE_DEFAULTS, **value.get_dict()}
    if not isinstance(settings['epochs'], int) or settings['epochs'] < 1:
        return f'epochs must be a positive integer, not {settings["epochs"]!r}'
    if not 0 <= settings['dataset_share'] < 1:
        return f'dataset_share must be from 0 to below 1, not {settings["dataset_share"]}'
    if settings['val_rows'] is not None and (not isinstance(settings['val_rows'], int) or settings['val_rows'] < 1):
        return f'val_rows must be a positive integer or None (all), not {settings["val_rows"]!r}'
    if not isinstance(settings['threads'], int) or settings['threads'] < 1:
        return f'threads must be a positive integer, not {settings["threads"]!r}'
    return None


def finetune_inputs(rows: list[dict[str, Any]]) -> tuple[orm.List, dict[str, orm.Data]]:
    """The ``rows`` and ``sources`` inputs of :func:`finetune_on_rows` for rows of
    :func:`aiida_wyckoffdiff.relaxation_rows.training_rows`: each row's table and structure become inputs
    (``table_<n>``, ``relaxed_<n>``, numbered in the rows' order), and in the rows their pks and uuid give way to
    those input names. So the inputs' hashes depend on content only, and a rerun from cached relaxations finds the
    fine-tuning in the cache too.
    """
    tables: dict[int, str] = {}
    sources: dict[str, orm.Data] = {}
    kept = []
    for index, row in enumerate(rows):
        table = tables.setdefault(row['table_pk'], f'{TABLE_PREFIX}{len(tables)}')
        sources[table] = orm.load_node(row['table_pk'])
        sources[f'{RELAXED_PREFIX}{index}'] = orm.load_node(row['structure_pk'])
        kept.append({**{key: value for key, value in row.items() if key not in SOURCE_COLUMNS},
                     'table_input': table, 'structure_input': f'{RELAXED_PREFIX}{index}'})
    return orm.List(kept), sources


@calcfunction
def finetune_on_rows(
    checkpoint: CheckpointData, dataset: orm.SinglefileData, rows: orm.List, settings: orm.Dict | None = None,
    **sources: orm.Data,
) -> dict[str, orm.Data]:
    """Fine-tune ``checkpoint`` for ``epochs`` more epochs on ``rows`` mixed with ``dataset``'s rows.

    ``rows`` and ``sources`` come from :func:`finetune_inputs`: every row names its table and structure among the
    ``sources`` (``table_input``, ``structure_input``). Outputs ``checkpoint`` (a ``CheckpointData``) and ``report``
    (rows used, epochs, seconds, and the energy head fitted to the rows: ``model/energy.py``).
    """
    import tempfile
    import time
    from pathlib import Path

    import pandas as pd
    import torch

    from ..data import frame_sha256, load_dataset
    from ..model.training import finetune_on_new_rows
    from ..relaxation_rows import ROW_SOURCE

    new_rows = rows.get_list()
    named = {row[column] for row in new_rows for column in ('table_input', 'structure_input')}
    missing = sorted(named - sources.keys())
    if missing:
        raise ValueError(f'rows name sources that are not inputs: {", ".join(missing[:5])}; use finetune_inputs(rows)')
    chosen = {**FINETUNE_DEFAULTS, **(settings.get_dict() if settings is not None else {})}
    torch.set_num_threads(chosen['threads'])
    with dataset.as_path() as path:
        frame = load_dataset(path)
    started = time.perf_counter()
    with checkpoint.as_path() as base, tempfile.TemporaryDirectory() as folder:
        output = Path(folder) / 'wyckoffdiff-round.pt'
        mixed, done, head = finetune_on_new_rows(
            frame, pd.DataFrame(new_rows), base, output, epochs=chosen['epochs'], dataset_share=chosen['dataset_share'],
            val_rows=chosen['val_rows'], seed=chosen['seed'], learning_rate=chosen['learning_rate'],
            device=chosen['device'],
        )
        tuned = CheckpointData(file=output, kind='wyckoffdiff')
    report = {
        'rows': len(new_rows),
        'dataset_train_rows': int(((mixed['split'] == 'train') & (mixed['source'] != ROW_SOURCE)).sum()),
        'dataset_val_rows': int((mixed['split'] == 'val').sum()),
        'epochs': [done, done + chosen['epochs']],
        'seconds': round(time.perf_counter() - started, 1),
        'mixed_rows_sha256': frame_sha256(mixed),
        'energy_head': None if head is None else {'rows': head.rows, 'loo_rmse': round(head.loo_rmse, 4),
                                                  'alpha': head.alpha},
    }
    return {'checkpoint': tuned, 'report': orm.Dict(report)}
