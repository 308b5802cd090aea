"""Fine-tuning rows from the workflow's own relaxations, found in the provenance graph.

Every Materials Project training row lies within 0.08 eV/atom of the hull, so the e_above_hull condition has nothing
to contrast; the structures the workflow relaxed reach 0 to several eV/atom. :func:`find_relaxations` queries the
profile (QueryBuilder, not files) for finished ``wyckoffdiff.phase_diagram`` runs: each run's ``table`` output (a row
per generated structure, e_above_hull against the Materials Project reference hull) and the relaxed structures its
hull step (``assemble_hull``) read. :func:`training_rows` labels each relaxed structure as the dataset builder labels a
crystal (:func:`aiida_wyckoffdiff.data.protostructure_columns`), keeps the lowest-energy row of each protostructure
label, and records the pks each row came from.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiida import orm

if TYPE_CHECKING:
    from pymatgen.core import Structure

__all__ = [
    'PHASE_DIAGRAM', 'RelaxationSource', 'RowsReport', 'find_relaxations', 'lowest_per_label', 'relaxed_row',
    'training_rows',
]

PHASE_DIAGRAM = 'aiida.workflows:wyckoffdiff.phase_diagram'
RELAXED_PREFIX = 'relaxed_'
"""Link label prefix of the relaxed structures among ``assemble_hull``'s inputs (``relaxed_<key>``)."""
ROW_SOURCE = 'relaxation'
"""The ``source`` column of rows from relaxations (the dataset's rows name their MP file)."""


@dataclass
class RelaxationSource:
    """One finished phase-diagram run: its ``table`` output and the relaxed structure of each table key."""

    run: orm.WorkflowNode
    table: orm.List
    structures: dict[str, orm.StructureData]


@dataclass
class RowsReport:
    """The rows and what was left out, with why."""

    rows: list[dict[str, Any]]
    relaxed: int = 0
    """Relaxed rows read from the tables (before deduplication)."""
    skipped: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        skipped = ', '.join(f'{count} {reason}' for reason, count in sorted(self.skipped.items())) or 'none'
        return f'{len(self.rows)} distinct protostructures from {self.relaxed} relaxed structures (skipped: {skipped})'


def find_relaxations(*, chemsys: str | None = None, runs: Sequence[int] | None = None) -> list[RelaxationSource]:
    """The finished phase-diagram runs of the loaded profile, oldest first, with their tables and relaxed structures.

    :param chemsys: only runs of this chemical system (``Li-O``).
    :param runs: only these run pks.
    :raises NoRelaxationsError: no such run holds a table.
    """
    from .exceptions import NoRelaxationsError

    filters: dict[str, Any] = {'process_type': PHASE_DIAGRAM, 'attributes.exit_status': 0}
    if runs is not None:
        filters['id'] = {'in': list(runs)}
    query = orm.QueryBuilder().append(orm.WorkflowNode, filters=filters, tag='run', project='*')
    if chemsys is not None:
        query.append(orm.Str, with_outgoing='run', edge_filters={'label': 'chemsys'},
                     filters={'attributes.value': chemsys})
    query.append(orm.List, with_incoming='run', edge_filters={'label': 'table'}, tag='table', project='*')
    query.append(orm.CalcFunctionNode, with_outgoing='table', tag='hull', project='id')  # assemble_hull made the table
    found = query.all()
    if not found:
        where = f' of {chemsys}' if chemsys else ''
        raise NoRelaxationsError(f'no finished wyckoffdiff.phase_diagram run{where} in this profile, so no relaxed '
                                 'structures to learn from: run one first (verdi run examples/phase_diagram_li_o.py)')
    structures: dict[int, dict[str, orm.StructureData]] = {hull: {} for _, _, hull in found}
    inputs = orm.QueryBuilder().append(orm.CalcFunctionNode, filters={'id': {'in': list(structures)}}, tag='hull',
                                       project='id')
    inputs.append(orm.StructureData, with_outgoing='hull', edge_filters={'label': {'like': f'{RELAXED_PREFIX}%'}},
                  edge_tag='link', edge_project='label', tag='structure', project='*')
    for found_input in inputs.iterdict():
        key = found_input['link']['label'].removeprefix(RELAXED_PREFIX)
        structures[found_input['hull']['id']][key] = found_input['structure']['*']
    sources = [RelaxationSource(run, table, structures[hull]) for run, table, hull in found]
    return sorted(sources, key=lambda source: source.run.ctime)


def training_rows(
    sources: Sequence[RelaxationSource], *, potential: str | None = None, include_pruned: bool = False
) -> RowsReport:
    """Dataset rows (:data:`aiida_wyckoffdiff.data.COLUMNS`, ``split`` ``train``) of the relaxed structures, one per
    protostructure label of the relaxed structure: its lowest e_above_hull. Each row also names ``structure_pk``,
    ``table_pk`` and ``run_pk`` it came from, its ``potential`` and ``relaxations`` (how many relaxed structures had
    its label).

    :param potential: only rows relaxed by this potential (``chgnet``); rows of several potentials are refused,
        since their e_above_hull are not on one scale.
    :param include_pruned: keep structures whose relaxation was stopped early; their energy is that of the step it
        stopped at, not a relaxed one, so they are left out by default.
    :raises NoRelaxationsError: no relaxed structure is left.
    :raises ValueError: rows of several potentials and no ``potential`` to choose one.
    """
    from .exceptions import NoRelaxationsError, ProtostructureError

    candidates: list[dict[str, Any]] = []
    report = RowsReport(rows=[])

    def skip(reason: str) -> None:
        report.skipped[reason] = report.skipped.get(reason, 0) + 1

    for source in sources:
        for row in source.table.get_list():
            if row['e_above_hull'] is None:
                skip('failed')
                continue
            if row.get('pruned') and not include_pruned:
                skip('pruned')
                continue
            if potential is not None and row['potential'] != potential:
                skip(f'not {potential}')
                continue
            node = source.structures.get(row['key'])
            if node is None:
                skip('no relaxed structure')
                continue
            report.relaxed += 1
            try:
                candidate = relaxed_row(
                    node.get_pymatgen_structure(), material_id=f'aiida-{node.uuid}', e_above_hull=row['e_above_hull'],
                    formation_energy_per_atom=row['formation_energy_per_atom'], potential=row['potential'],
                )
            except ProtostructureError:
                skip('symmetry detection failed')
                continue
            candidates.append({**candidate, 'structure_pk': node.pk, 'table_pk': source.table.pk, 'run_pk': source.run.pk})
    if not candidates:
        raise NoRelaxationsError(f'none of the {len(sources)} runs has a usable relaxed structure ({report.summary()})')
    potentials = {candidate['potential'] for candidate in candidates}
    if len(potentials) > 1:
        raise ValueError(f'rows relaxed by {", ".join(sorted(potentials))}: their e_above_hull are not on one scale; '
                         'choose one potential')
    report.rows = lowest_per_label(candidates)
    return report


def relaxed_row(
    structure: Structure, *, material_id: str, e_above_hull: float, formation_energy_per_atom: float | None,
    potential: str,
) -> dict[str, Any]:
    """A dataset row (:data:`aiida_wyckoffdiff.data.COLUMNS`, ``split`` ``train``) of one relaxed structure, labelled
    as the dataset builder labels a crystal; plain Python, so benchmarks build the same rows without a profile.

    :raises ProtostructureError: the structure's symmetry could not be detected.
    """
    from .data import protostructure_columns
    from .symmetry import structure_label

    return {
        'material_id': material_id,
        **protostructure_columns(structure_label(structure)),
        'nsites': len(structure),
        'formation_energy_per_atom': formation_energy_per_atom,
        'e_above_hull': e_above_hull,
        'split': 'train',
        'source': ROW_SOURCE,
        'potential': potential,
    }


def lowest_per_label(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per protostructure label, the lowest e_above_hull, sorted by label; ``relaxations`` counts the rows
    that had that label."""
    best: dict[str, dict[str, Any]] = {}
    counts: dict[str, int] = {}
    for row in rows:
        label = row['label']
        counts[label] = counts.get(label, 0) + 1
        if label not in best or row['e_above_hull'] < best[label]['e_above_hull']:
            best[label] = row
    return [{**best[label], 'relaxations': counts[label]} for label in sorted(best)]
