"""``wyckoffdiff.realize``: PyXtal realization of a batch of protostructures as one calcfunction.

Realization is cheap (about 0.1 s a structure) and runs where the workflow runs, so it is a
calcfunction: its inputs (labels, seed, attempts) and outputs (one StructureData per realized
protostructure plus a report of every rejection) are in the graph, without a job's overhead.
"""

from __future__ import annotations

from aiida import orm
from aiida.engine import calcfunction

__all__ = ['realize_protostructures']


def output_label(index: int) -> str:
    """Link label of the ``index``-th protostructure's structure: link labels allow no ``:`` or ``-``."""
    return f'structure_{index:05d}'


@calcfunction
def realize_protostructures(protostructures: orm.List, seed: orm.Int, attempts: orm.Int) -> dict[str, orm.Data]:
    """Realize each protostructure label with its own seed spawned from ``seed``.

    Outputs ``structure_NNNNN`` for each success (NNNNN is the position in the input list) and
    ``report``: a list, in input order, of ``{label, ok, attempts, output | reason, rejections}``.
    """
    from ..realize import realize_many

    results = realize_many(protostructures.get_list(), attempts=attempts.value, seed=seed.value, progress=False)
    outputs: dict[str, orm.Data] = {}
    report = []
    for index, result in enumerate(results):
        entry = {'label': result.protostructure.label, 'ok': result.ok, 'attempts': result.attempts, 'rejections': result.rejections}
        if result.ok:
            entry['output'] = output_label(index)
            outputs[entry['output']] = orm.StructureData(pymatgen=result.structure)
        else:
            entry['reason'] = result.reason
        report.append(entry)
    outputs['report'] = orm.List(report)
    return outputs
