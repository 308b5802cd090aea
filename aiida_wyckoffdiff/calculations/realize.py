"""``wyckoffdiff.realize``: PyXtal realization of batches of protostructures as one calcfunction.

Realization is cheap (about 0.1 s a structure) and runs where the workflow runs, so it is a
calcfunction: its inputs (the label lists, seed, attempts) and outputs (one StructureData per
realized protostructure plus a report of every rejection) are in the graph, without a job's
overhead. Several lists (one per generate job) can be passed; their labels are deduplicated so
each distinct protostructure is realized once.
"""

from __future__ import annotations

from aiida import orm
from aiida.engine import calcfunction

__all__ = ['output_label', 'realize_protostructures']


def output_label(index: int) -> str:
    """Link label of the ``index``-th distinct protostructure's structure (link labels allow no ``:`` or ``-``)."""
    return f'structure_{index:05d}'


@calcfunction
def realize_protostructures(
    seed: orm.Int, attempts: orm.Int, candidates: orm.Int | None = None, **protostructures: orm.List
) -> dict[str, orm.Data]:
    """Realize each distinct label of the ``protostructures`` lists, each with its own seed spawned from ``seed``.

    Outputs ``structure_NNNNN`` per success (NNNNN: position among the distinct labels) and ``report``: in that
    order, ``{label, ok, attempts, rejections, output | reason, sources}``; ``sources`` names the input lists
    that held the label. With ``candidates`` K > 1, each label is realized K times (base seeds ``seed + k``):
    the first success is ``structure_NNNNN``, the others ``structure_NNNNN_c<k>``, listed in ``alternatives``.
    """
    from ..realize import realize_many

    sources: dict[str, list[str]] = {}
    for name, labels in sorted(protostructures.items()):
        for label in dict.fromkeys(labels.get_list()):
            sources.setdefault(label, []).append(name)
    distinct = list(sources)
    draws = [realize_many(distinct, attempts=attempts.value, seed=seed.value + k, progress=False)
             for k in range(candidates.value if candidates is not None else 1)]
    outputs: dict[str, orm.Data] = {}
    report = []
    for index, label in enumerate(distinct):
        results = [draw[index] for draw in draws]
        realized = [result for result in results if result.ok]
        first = realized[0] if realized else results[0]
        entry = {'label': label, 'ok': first.ok, 'attempts': first.attempts, 'rejections': first.rejections,
                 'sources': sources[label]}
        if realized:
            entry['output'] = output_label(index)
            outputs[entry['output']] = orm.StructureData(pymatgen=first.structure)
            if len(draws) > 1:
                entry['alternatives'] = [f'{entry["output"]}_c{k}' for k in range(1, len(realized))]
                for name, result in zip(entry['alternatives'], realized[1:]):
                    outputs[name] = orm.StructureData(pymatgen=result.structure)
        else:
            entry['reason'] = first.reason
        report.append(entry)
    outputs['report'] = orm.List(report)
    return outputs
