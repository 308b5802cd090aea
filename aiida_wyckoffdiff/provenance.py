"""Walk the provenance graph back from a structure to the conditions, seed and weights that made it.

A relaxed structure comes from a ``wyckoffdiff.relax`` job, whose input structure comes from the
``wyckoffdiff.realize`` calcfunction, whose label lists come from ``wyckoffdiff.generate`` jobs, whose checkpoint
may come from a ``wyckoffdiff.finetune`` on earlier rounds' relaxations (and its checkpoint from an earlier one).
:func:`lineage` follows exactly those links and returns one record per step, nearest first.
"""

from __future__ import annotations

from typing import Any

from aiida import orm
from aiida.common.links import LinkType

from .calculations.realize import template_input
from .calculations.relax import candidate_of

__all__ = [
    'computed_entries', 'lineage', 'load_source', 'potential_e_above_hull', 'spacegroup_choice_of', 'structures_of'
]


def _incoming(node: orm.Node, link_label: str) -> orm.Node | None:
    links = node.base.links.get_incoming(link_type=(LinkType.INPUT_CALC, LinkType.INPUT_WORK), link_label_filter=link_label).all()
    return links[0].node if links else None


def _created_as(node: orm.Node) -> tuple[orm.ProcessNode | None, str | None]:
    """The process that created ``node`` and the link label it gave it."""
    links = node.base.links.get_incoming(link_type=LinkType.CREATE).all()
    return (links[0].node, links[0].link_label) if links else (None, None)


def _value(node: orm.Node | None) -> Any:
    if node is None:
        return None
    if isinstance(node, orm.List):
        return node.get_list()
    if isinstance(node, orm.Dict):
        return node.get_dict()
    return getattr(node, 'value', None)


def _process_name(process: orm.ProcessNode) -> str:
    return process.process_type.rsplit(':', 1)[-1] if process.process_type else process.process_label or '?'


def spacegroup_choice_of(workflow: orm.ProcessNode | None) -> dict[str, Any] | None:
    """How a phase-diagram run chose its space groups: its ``spacegroup_choice`` report (method, reason, scores,
    nearest training crystals), ``{'method': 'given'}`` where they were an input, ``None`` for other processes and
    runs made before the choice was recorded."""
    if workflow is None:
        return None
    if 'spacegroup_choice' in workflow.outputs:
        return workflow.outputs.spacegroup_choice.get_dict()
    if 'spacegroups' in workflow.inputs:
        return {'method': 'given', 'spacegroups': workflow.inputs.spacegroups.get_list()}
    return None


def lineage(node: orm.Node) -> list[dict[str, Any]]:
    """Steps from ``node`` back to the generation conditions, and from a checkpoint fine-tuned on relaxations on to
    the runs and structures it learned from; each step names its process and what it recorded."""
    steps: list[dict[str, Any]] = []
    current: orm.Node | None = node
    label = None  # the protostructure a realization was of, so the generation step can say how it was chosen
    while current is not None:
        creator, link_label = _created_as(current)
        if creator is None:
            break
        name = _process_name(creator)
        step: dict[str, Any] = {'process': name, 'pk': creator.pk, 'output': link_label}
        caller = creator.caller
        if caller is not None:
            step['workflow'] = f'{caller.process_label}<{caller.pk}>'
        current = None
        if name == 'wyckoffdiff.relax':
            key = link_label.split('__', 1)[-1]
            results = creator.outputs.results.get_dict() if 'results' in creator.outputs else {}
            step['relaxer'] = _value(creator.inputs.relaxer)
            step['checkpoint_sha256'] = results.get('checkpoint_sha256')
            step['settings'] = results.get('settings')
            step['result'] = results.get('structures', {}).get(key)
            chosen = (step['result'] or {}).get('chosen') or key  # one of several candidates, where there were
            if chosen != key:
                step.update(chosen=chosen, candidate_scores=step['result'].get('candidate_scores'))
            current = creator.inputs.alternatives[chosen] if chosen != key else creator.inputs.structures[key]
        elif name == 'wyckoffdiff.realize':
            report = {entry.get('output'): entry for entry in creator.outputs.report.get_list()}
            # Candidate k of a protostructure (``structure_NNNNN_c<k>``) shares its report entry.
            first, candidate = candidate_of(link_label)
            entry = report.get(first, {})
            label = entry.get('label')
            step.update(attempts=_value(creator.inputs.attempts), label=label)
            realized_by = (entry.get('realized_by') or {}).get(link_label)
            if realized_by is None:  # reports written before templates: draw k's seed was seed + k
                realized_by = {'seed': _value(creator.inputs.seed) + candidate}
            if 'template' in realized_by:
                template = creator.base.links.get_incoming(link_label_filter=template_input(realized_by['template']))
                node = template.one().node
                split = node.base.attributes.get('split')
                step.update(realized=f'from {realized_by["template"]} ({split} split)', template=realized_by['template'],
                            template_pk=node.pk, data_sha256=node.base.attributes.get('data_sha256'))
            else:
                step.update(realized=f'by PyXtal, seed {realized_by["seed"]}', seed=realized_by['seed'])
            sources = entry.get('sources') or []
            current = _incoming(creator, sources[0]) if sources else None
        elif name == 'wyckoffdiff.generate':
            inputs = creator.inputs
            step.update(
                chemsys=_value(inputs.chemsys),
                spacegroups=_value(inputs.spacegroups),
                num_samples_per_spacegroup=_value(inputs.num_samples),
                e_above_hull=_value(inputs.e_above_hull) if 'e_above_hull' in inputs else None,
                guidance=_value(inputs.guidance),
                guided=_value(inputs.guided) if 'guided' in inputs else None,
                plausible=_value(inputs.plausible) if 'plausible' in inputs else None,
                known_prototypes=_value(inputs.known_prototypes) if 'known_prototypes' in inputs else None,
                steps=_value(inputs.steps),
                seed=_value(inputs.seed),
                checkpoint_sha256=inputs.checkpoint.sha256,
                checkpoint_pk=inputs.checkpoint.pk,
                origin=_sample_origin(creator, label),
            )
            choice = spacegroup_choice_of(caller)
            if choice is not None:
                step['spacegroup_choice'] = {key: choice[key] for key in ('method', 'reason') if key in choice}
            current = inputs.checkpoint  # a checkpoint fine-tuned on earlier relaxations goes on to them
        elif name == 'wyckoffdiff.finetune':
            rows = creator.inputs.rows.get_list()
            incoming = creator.base.links.get_incoming(link_type=LinkType.INPUT_CALC).all()
            sources = {link.link_label: link.node for link in incoming}
            tables = {sources[row['table_input']].pk: sources[row['table_input']] for row in rows}.values()
            step.update(
                rows=len(rows),
                runs=sorted({table.creator.caller.pk for table in tables if table.creator and table.creator.caller}),
                relaxed_pks=sorted(sources[row['structure_input']].pk for row in rows),
                report=_value(creator.outputs.report) if 'report' in creator.outputs else None,
                previous_checkpoint_pk=creator.inputs.checkpoint.pk,
            )
            current = creator.inputs.checkpoint
        elif name == 'wyckoffdiff.random':
            inputs = creator.inputs
            step.update(source='random', chemsys=_value(inputs.chemsys), spacegroups=_value(inputs.spacegroups),
                        num_samples_per_spacegroup=_value(inputs.num_samples), seed=_value(inputs.seed))
        elif name == 'wyckoffdiff.substitution':
            report = {entry['output']: entry for entry in creator.outputs.report.get_list()}
            step.update(source='substitution', chemsys=_value(creator.inputs.chemsys),
                        label=report.get(link_label, {}).get('label'), data_sha256=_value(creator.outputs.data_sha256))
        elif 'structure' in creator.inputs:
            # Another code's step on one structure (a pw.x relaxation of the DFT follow-up): follow it back.
            current = creator.inputs.structure
        steps.append(step)
    return steps


SAMPLE_ORIGINS = {
    'library': "chosen among the training crystals' arrangements by the model's score",
    'chain': 'drawn by a reverse diffusion chain',
}


def _sample_origin(generate: orm.CalcJobNode, label: str | None) -> str | None:
    """How the generate job came by the protostructure ``label`` (both ways where both gave it; ``None`` for documents
    written before samples recorded their origin)."""
    document = generate.outputs.samples.get_dict() if 'samples' in generate.outputs else {}
    origins = {sample.get('origin') for sample in document.get('samples', []) if sample.get('protostructure') == label}
    return ' and '.join(SAMPLE_ORIGINS[origin] for origin in sorted(origins - {None})) or None


_STRUCTURE_OUTPUTS = {
    'wyckoffdiff.phase_diagram': 'hull_structures', 'wyckoffdiff.rounds': 'hull_structures', 'wyckoffdiff.dft_hull': 'relaxed'
}
"""The output namespace that holds the structures of each workflow a hand-off can start from."""


def structures_of(source: orm.Node | orm.Group) -> dict[str, orm.StructureData]:
    """The structures a hand-off starts from, by key.

    A Group gives its StructureData members (keyed ``node_<pk>``); a ``wyckoffdiff.phase_diagram`` run its
    ``hull_structures`` (a ``wyckoffdiff.rounds`` run those of its last round); a ``wyckoffdiff.dft_hull`` run its
    ``relaxed`` structures; a StructureData itself.
    """
    if isinstance(source, orm.Group):
        return {f'node_{node.pk}': node for node in source.nodes if isinstance(node, orm.StructureData)}
    if isinstance(source, orm.StructureData):
        return {f'node_{source.pk}': source}
    namespace = _STRUCTURE_OUTPUTS.get(_process_name(source)) if isinstance(source, orm.WorkflowNode) else None
    if namespace is not None:
        return dict(source.outputs[namespace].items()) if namespace in source.outputs else {}
    raise ValueError(f'{source.__class__.__name__}<{source.pk}> is neither a group, a structure nor a run with '
                     'hull_structures or relaxed outputs')


def _table_row(structure: orm.StructureData) -> tuple[orm.WorkflowNode | None, dict[str, Any] | None]:
    """The phase-diagram run that relaxed ``structure`` and its row of that run's table (``None``, ``None`` if none)."""
    creator, link_label = _created_as(structure)
    if creator is None or _process_name(creator) != 'wyckoffdiff.relax' or creator.caller is None:
        return None, None
    key = link_label.split('__', 1)[-1]
    workflow = creator.caller  # the relax_base restart wrapper, or the phase-diagram run itself
    while workflow is not None and 'table' not in workflow.outputs:
        workflow = workflow.caller
    if workflow is None:
        return None, None
    return workflow, next((row for row in workflow.outputs.table.get_list() if row['key'] == key), None)


def potential_e_above_hull(structure: orm.StructureData) -> float | None:
    """The potential's e_above_hull of a relaxed structure, from the table of the phase-diagram run that made it."""
    _, row = _table_row(structure)
    return row['e_above_hull'] if row is not None else None


def computed_entries(structures: dict[str, orm.StructureData]) -> list[Any]:
    """Relaxed structures as pymatgen ``ComputedStructureEntry`` objects, with the elemental references of the runs
    that made them, so that ``PhaseDiagram(entries)`` is the potential's own hull.

    Each entry's ``data`` holds its row of the run's table (formation energy, e_above_hull against the MP hull, space
    groups, potential and checkpoint, duplicates), its ``lineage``, its node's ``uuid`` and the ``run``'s. Structures
    from several runs keep each run's references apart (``entry_id`` ``<run pk>_reference_<El>``).
    """
    from .hull import computed_entry, elemental_entries
    from .potentials import RELAXERS

    entries, runs = [], {}
    for key, node in sorted(structures.items()):
        run, row = _table_row(node)
        if row is None:
            raise ValueError(f'{key}: StructureData<{node.pk}> was not relaxed by a phase-diagram run, so it has no '
                             'energy to export; export it as a structure file instead')
        structure = node.get_pymatgen_structure()
        data = {**row, 'lineage': lineage(node), 'uuid': node.uuid, 'run': run.uuid}
        apply_mp2020 = not RELAXERS[row['potential']].includes_mp2020
        entries.append(computed_entry(structure, row['energy_per_atom'] * len(structure), apply_mp2020, key, data))
        runs[run.pk] = (run, row['potential'], row['checkpoint_sha256'])
    for pk, (run, potential, checkpoint) in runs.items():
        sources = run.outputs.elemental_sources.get_dict() if 'elemental_sources' in run.outputs else None  # older runs
        references = elemental_entries(run.outputs.elemental_energies.get_dict(), potential, checkpoint, sources)
        for reference in references:
            reference.data['run'] = run.uuid
            if len(runs) > 1:
                reference.entry_id = f'{pk}_{reference.entry_id}'
        entries += references
    return entries


def load_source(identifier: str | int | orm.Node | orm.Group) -> orm.Node | orm.Group:
    """A Group by label, else a node by pk or UUID; a ValueError names what was looked for."""
    from aiida.common.exceptions import MultipleObjectsError, NotExistent

    if isinstance(identifier, (orm.Node, orm.Group)):
        return identifier
    try:
        return orm.load_group(label=str(identifier))
    except NotExistent:
        pass
    try:
        return orm.load_node(identifier)
    except (NotExistent, MultipleObjectsError) as exception:
        raise ValueError(f'{identifier!r} is neither a group label nor a single node in this profile: {exception}') from None
