"""What a finished ``wyckoffdiff.phase_diagram`` run found: its metrics, the known phases it regenerated, new near-hull structures.

Everything is read back from the provenance graph (the generate jobs' samples, the realize calcfunction's
structures, the results table and CIFs), so a run can be scored long after it finished, in any profile.
"""

from __future__ import annotations

import io
import warnings
from typing import Any

from aiida import orm

from .metrics import STABILITY, scan_metrics
from .provenance import spacegroup_choice_of

__all__ = ['by_source', 'format_report', 'scan_report']


def _called(workchain: orm.WorkChainNode, process_label: str) -> list[orm.ProcessNode]:
    """Processes of ``process_label`` called by the workchain or by any workflow it called, oldest first."""
    found = []
    for child in sorted(workchain.called_descendants, key=lambda node: node.ctime):
        if child.process_label == process_label:
            found.append(child)
    return found


def _relaxed_structures(workchain: orm.WorkChainNode) -> dict[str, Any]:
    """The relaxed structure of every table row with one, by key, from the run's CIF folder."""
    from pymatgen.core import Structure

    folder = workchain.outputs.cifs
    structures = {}
    with warnings.catch_warnings():
        warnings.filterwarnings('ignore', message='Issues encountered while parsing CIF')  # rounding notes only
        for name in folder.base.repository.list_object_names():
            text = folder.base.repository.get_object_content(name, mode='r')
            structures[name.removesuffix('.cif')] = Structure.from_str(text, fmt='cif')
    return structures


def _label_or_none(structure: Any) -> str | None:
    from .exceptions import ProtostructureError
    from .symmetry import structure_label

    try:
        return structure_label(structure)
    except ProtostructureError:
        return None


def by_source(rows: list[dict[str, Any]], relaxed_labels: dict[str, str | None], stability: float,
              known_labels: dict[str, str]) -> dict[str, dict[str, Any]]:
    """What each source of candidates (``model``, ``random``, ``model,random`` where both proposed a protostructure,
    ``substitution``) gave: structures relaxed, distinct ones within ``stability`` of the hull (duplicates merged),
    and the Materials Project phases (``known_labels``: label -> material id) among its relaxed structures."""
    sources: dict[str, dict[str, Any]] = {}
    for row in rows:
        if row.get('source') is None or row['e_above_hull'] is None:
            continue
        summary = sources.setdefault(row['source'], {'relaxed': 0, 'near_hull': 0, 'known_phases': []})
        summary['relaxed'] += 1
        summary['near_hull'] += row['e_above_hull'] <= stability and not row.get('duplicate_of')
        material = known_labels.get(relaxed_labels.get(row['key']) or '')
        if material and material not in summary['known_phases']:
            summary['known_phases'].append(material)
    return dict(sorted(sources.items()))


def scan_report(workchain: orm.WorkChainNode, stability: float = STABILITY, dataset: Any = None) -> dict[str, Any]:
    """Metrics, regenerated known phases and new near-hull structures of a finished phase-diagram run.

    :param stability: eV/atom above the reference hull that counts as stable (S.U.N., near-hull lists).
    :param dataset: the protostructure dataset (``data.load_dataset()``, the default): training labels and
        space-group counts for novelty and the distribution distance.
    :return: ``metrics`` (:class:`~aiida_wyckoffdiff.metrics.ScanMetrics` as a dict), ``known_phases`` (relaxed
        structures whose label is a Materials Project entry of the system, with its id and MP e_above_hull) and
        ``new_near_hull`` (novel relaxed structures within ``stability`` of the hull), each sorted by our e_above_hull.
    """
    from .data import load_dataset, spacegroup_counts
    from .references import reference_entries

    if not workchain.is_finished_ok:
        raise ValueError(f'{workchain.process_label}<{workchain.pk}> did not finish ok: nothing to score')
    dataset = load_dataset() if dataset is None else dataset
    training = dataset[dataset['split'] == 'train']
    training_labels = set(training['label'])
    samples = [label for job in _called(workchain, 'GenerateCalculation') if job.is_finished_ok
               for label in job.outputs.protostructures.get_list()]
    (realize,) = _called(workchain, 'realize_protostructures')
    realized = {entry['label']: realize.outputs[entry['output']].get_pymatgen_structure()
                for entry in realize.outputs.report.get_list() if entry.get('output')}
    rows = workchain.outputs.table.get_list()
    relaxed = _relaxed_structures(workchain)
    relaxed_labels = {key: _label_or_none(structure) for key, structure in relaxed.items()}
    metrics = scan_metrics(samples, realized, rows, relaxed_labels, training_labels, spacegroup_counts(dataset),
                           stability)
    chemsys = workchain.inputs.chemsys.value
    entries = reference_entries(tuple(chemsys.split('-')))
    by_label = {row.label: row for row in entries.itertuples() if isinstance(row.label, str) and row.label}
    known, new = [], []
    for row in rows:
        label = relaxed_labels.get(row['key'])
        if row['e_above_hull'] is None or label is None:
            continue
        record = {'key': row['key'], 'formula': row['formula'], 'label': label, 'requested': row['label_requested'],
                  'e_above_hull': row['e_above_hull']}
        if label in by_label:
            entry = by_label[label]
            known.append(record | {'material_id': entry.material_id, 'mp_e_above_hull': float(entry.e_above_hull),
                                   'in_training': label in training_labels})
        elif row['e_above_hull'] <= stability and label not in training_labels:
            new.append(record)
    return {
        'workchain': workchain.pk,
        'chemsys': chemsys,
        'metrics': metrics.as_dict(),
        'known_phases': sorted(known, key=lambda r: r['e_above_hull']),
        'new_near_hull': sorted(new, key=lambda r: r['e_above_hull']),
        'by_source': by_source(rows, relaxed_labels, stability, {label: e.material_id for label, e in by_label.items()}),
        'spacegroup_choice': spacegroup_choice_of(workchain),
    }


def format_report(report: dict[str, Any]) -> str:
    """The report as the text ``wyckoffdiff metrics`` prints."""
    stream = io.StringIO()
    metrics = report['metrics']
    stream.write(f"{report['chemsys']}: PhaseDiagramWorkChain<{report['workchain']}>\n")
    choice = report.get('spacegroup_choice')
    if choice is not None:
        why = f": {choice['reason']}" if 'reason' in choice else ''
        stream.write(f"  space groups {choice['method']}{why}\n    {' '.join(map(str, choice['spacegroups']))}\n")
    stream.write(f"  samples {metrics['samples']}, distinct {metrics['distinct']}, realized {metrics['realized']}, "
                 f"relaxed {metrics['relaxed']}\n")
    for name in ('valid_structure', 'valid_composition', 'uniqueness', 'novelty', 'p1_share', 'sun_rate',
                 'spacegroup_kept', 'crystal_system_kept'):
        stream.write(f'  {name:<20} {100 * metrics[name]:6.1f} %\n')
    stream.write(f"  {'spacegroup_distance':<20} {metrics['spacegroup_distance']:8.3f} (Jensen-Shannon to training)\n")
    stream.write(f"  stable (<= {metrics['stability']} eV/atom): {metrics['stable']}, S.U.N.: {metrics['sun']}\n")
    stream.write('  known Materials Project phases regenerated:\n')
    for record in report['known_phases']:
        stream.write(f"    {record['formula']:>8} {record['material_id']:<11} {record['label']:<28} "
                     f"ours {record['e_above_hull']:+.3f}  MP {record['mp_e_above_hull']:+.3f} eV/atom\n")
    stream.write(f"  new structures within {metrics['stability']} eV/atom of the hull: {len(report['new_near_hull'])}\n")
    for record in report['new_near_hull']:
        stream.write(f"    {record['formula']:>8} {record['label']:<28} {record['e_above_hull']:+.3f} eV/atom\n")
    if len(report.get('by_source', {})) > 1:
        stream.write(f"  by source: relaxed, distinct within {metrics['stability']} eV/atom, MP phases regenerated\n")
        for source, summary in report['by_source'].items():
            stream.write(f"    {source:<14} {summary['relaxed']:5d} {summary['near_hull']:5d}  "
                         f"{', '.join(summary['known_phases']) or '-'}\n")
    return stream.getvalue()
