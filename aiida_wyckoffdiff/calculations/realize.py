"""``wyckoffdiff.realize``: realization of batches of protostructures as one calcfunction.

Realization is cheap (about 0.1 s a structure) and runs where the workflow runs, so it is a
calcfunction: its inputs (the label lists, seed, attempts, method and the template crystals) and outputs (one
StructureData per realized protostructure plus a report of every rejection) are in the graph, without a job's
overhead. Several lists (one per generate job) can be passed; their labels are deduplicated so
each distinct protostructure is realized once. With the ``template`` method, the training crystals whose geometry
a structure may take are inputs too (``template_<material id>``, made by :func:`template_nodes`), so the graph says
which crystal each structure was realized from.
"""

from __future__ import annotations

from collections.abc import Iterable

from aiida import orm
from aiida.engine import calcfunction

from ..templates import Template, TemplateLibrary

__all__ = ['TEMPLATE_PREFIX', 'output_label', 'realize_protostructures', 'template_nodes']

TEMPLATE_PREFIX = 'template_'


def output_label(index: int) -> str:
    """Link label of the ``index``-th distinct protostructure's structure (link labels allow no ``:`` or ``-``)."""
    return f'structure_{index:05d}'


def template_input(material_id: str) -> str:
    """Input name of a template crystal (link labels allow no ``-``)."""
    return TEMPLATE_PREFIX + material_id.replace('-', '_')


def template_nodes(labels: Iterable[str], count: int, library: TemplateLibrary) -> dict[str, orm.StructureData]:
    """The template crystals the realization of ``labels`` may use (the ``count`` most similar of each label's
    prototype), as inputs of :func:`realize_protostructures`. A crystal stored before (same material id and data
    sha256) is reused, so scans share one node per template."""
    chosen = {t.material_id: t for label in dict.fromkeys(labels) for t in library.templates_for(label, count)}
    if not chosen:
        return {}
    query = orm.QueryBuilder().append(orm.StructureData, project=['attributes.material_id', '*'], filters={
        'attributes.material_id': {'in': list(chosen)}, 'attributes.data_sha256': library.data_sha256})
    stored = dict(query.all())
    nodes = {}
    for material_id, template in chosen.items():
        node = stored.get(material_id)
        if node is None:
            node = orm.StructureData(pymatgen=template.structure)
            node.base.attributes.set_many({'material_id': material_id, 'protostructure': template.label,
                                           'split': 'train', 'data_sha256': library.data_sha256})
            node.label = f'{material_id} (template)'
            node.store()
        nodes[template_input(material_id)] = node
    return nodes


def _templates_of(nodes: dict[str, orm.StructureData]) -> TemplateLibrary:
    templates = [Template.from_structure(node.base.attributes.get('material_id'),
                                         node.base.attributes.get('protostructure'), node.get_pymatgen_structure())
                 for node in nodes.values()]
    return TemplateLibrary(templates)


@calcfunction
def realize_protostructures(
    seed: orm.Int, attempts: orm.Int, candidates: orm.Int | None = None, method: orm.Str | None = None,
    **inputs: orm.Data,
) -> dict[str, orm.Data]:
    """Realize each distinct label of the protostructure lists (every ``List`` input), each with its own seed
    spawned from ``seed``.

    Outputs ``structure_NNNNN`` per success (NNNNN: position among the distinct labels) and ``report``: in that
    order, ``{label, ok, attempts, rejections, output | reason, sources, realized_by}``; ``sources`` names the input
    lists that held the label, ``realized_by`` per output ``{template: material id}`` or ``{seed: PyXtal's}``. With
    ``candidates`` K > 1, each label is realized K times: the first success is ``structure_NNNNN``, the others
    ``structure_NNNNN_c<k>``, listed in ``alternatives``. ``method`` ``template`` (default ``pyxtal``): a label with a
    template among the ``template_*`` inputs is realized once, from the most similar (its alternatives, each pre-relaxed
    before one is chosen, cost 1.6-1.9x the atom-steps for -5 to +14 % near-hull structures: docs/realization.md), the
    others K times by PyXtal (base seed ``seed + k``, volume predicted); ``pyxtal``: every label K times, base seeds
    ``seed + k``.
    """
    from ..realize import realize_many

    templates = _templates_of({k: v for k, v in inputs.items() if k.startswith(TEMPLATE_PREFIX)})
    use_templates = method is not None and method.value == 'template'
    sources: dict[str, list[str]] = {}
    for name, labels in sorted(inputs.items()):
        if isinstance(labels, orm.List):
            for label in dict.fromkeys(labels.get_list()):
                sources.setdefault(label, []).append(name)
    distinct = list(sources)
    count = candidates.value if candidates is not None else 1
    chosen = {label: own[0] for label in distinct if use_templates and (own := templates.templates_for(label, 1))}
    first_draw = realize_many(distinct, attempts=attempts.value, seed=seed.value, progress=False,
                              templates=[chosen.get(label) for label in distinct], scale_volume=use_templates)
    without_template = [label for label in distinct if label not in chosen]
    draws = [dict(zip(distinct, first_draw, strict=True))] + [
        dict(zip(without_template, realize_many(without_template, attempts=attempts.value, seed=seed.value + k,
                                                progress=False, scale_volume=use_templates), strict=True))
        for k in range(1, count)]
    outputs: dict[str, orm.Data] = {}
    report = []
    for index, label in enumerate(distinct):
        results = [draw[label] for draw in draws if label in draw]
        realized = [result for result in results if result.ok]
        first = realized[0] if realized else results[0]
        entry = {'label': label, 'ok': first.ok, 'attempts': first.attempts, 'rejections': first.rejections,
                 'sources': sources[label]}
        if realized:
            names = [output_label(index)] + [f'{output_label(index)}_c{k}' for k in range(1, len(realized))]
            entry['output'] = names[0]
            if len(draws) > 1:
                entry['alternatives'] = names[1:]
            entry['realized_by'] = {name: {'template': result.template} if result.template else {'seed': result.seed}
                                    for name, result in zip(names, realized)}
            for name, result in zip(names, realized):
                outputs[name] = orm.StructureData(pymatgen=result.structure)
        else:
            entry['reason'] = first.reason
        report.append(entry)
    outputs['report'] = orm.List(report)
    return outputs
