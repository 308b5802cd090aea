"""Candidates from the baselines, as calcfunctions beside the model's generate jobs.

``wyckoffdiff.random``: random protostructures from the training split's Wyckoff prior (shipped with the package),
whose labels go through the same realize step as the model's. ``wyckoffdiff.substitution``: ionic substitution into
training-split crystals from the shared MP data, which gives 3D structures that skip realization. Both are cheap
(seconds) and run where the workflow runs; their inputs and outputs are in the graph, so a candidate's lineage says
which source proposed it.
"""

from __future__ import annotations

from aiida import orm
from aiida.engine import calcfunction

__all__ = ['random_protostructures_source', 'substituted_output', 'substitution_source']


def substituted_output(index: int) -> str:
    """Link label of the ``index``-th substituted structure."""
    return f'substituted_{index:05d}'


@calcfunction
def random_protostructures_source(
    chemsys: orm.Str, spacegroups: orm.List, num_samples: orm.Int, seed: orm.Int
) -> orm.List:
    """``num_samples`` random protostructure labels per space group, with the model's constraints (every element
    present, at most 60 atoms), drawn from the shipped training-split prior (``baselines.shipped_prior``)."""
    from ..baselines import random_protostructures, shipped_prior

    groups = spacegroups.get_list()
    samples = random_protostructures(shipped_prior(), chemsys.value.split('-'), groups, num_samples.value * len(groups),
                                     seed=seed.value)
    return orm.List([sample.label for sample in samples])


@calcfunction
def substitution_source(chemsys: orm.Str, num_structures: orm.Int) -> dict[str, orm.Data]:
    """At most ``num_structures`` structures of ``chemsys`` by ionic substitution (pymatgen ``Substitutor``, threshold
    1e-4) into training-split crystals with as many elements, most probable first.

    Outputs ``substituted_NNNNN`` per structure, ``report`` (``{output, label, formula}`` each) and ``data_sha256``,
    the hash of the data file the sources came from.
    """
    from ..baselines import substituted_structures, training_sources
    from ..data import MAIN_FILE, find_data_dir
    from ..files import file_sha256
    from ..symmetry import structure_label

    elements = chemsys.value.split('-')
    sources = [structure for _, _, structure in training_sources(len(elements))]
    structures = substituted_structures(sources, elements, max_structures=num_structures.value)
    outputs: dict[str, orm.Data] = {}
    report = []
    for index, structure in enumerate(structures):
        name = substituted_output(index)
        outputs[name] = orm.StructureData(pymatgen=structure)
        try:
            label = structure_label(structure)
        except Exception:  # noqa: BLE001 - a structure whose symmetry cannot be labelled is still a candidate
            label = None
        report.append({'output': name, 'label': label, 'formula': structure.composition.reduced_formula})
    outputs['report'] = orm.List(report)
    outputs['data_sha256'] = orm.Str(file_sha256(find_data_dir() / MAIN_FILE))
    return outputs
