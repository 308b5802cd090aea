"""``wyckoffdiff.choose_spacegroups`` and ``wyckoffdiff.allocate_spacegroups``: the space groups a phase-diagram scan
samples, how many samples each gets, and why, in the graph.

Calcfunctions of a moment (``aiida_wyckoffdiff.spacegroups``). ``choose_spacegroups``: from the chemical system, the
number of groups and the method, the groups the generate jobs are given and a report of each group's weight and the
training crystals nearest to the request. ``allocate_spacegroups``: from earlier rounds' hull tables, each group's
share of a later round's samples, so a round's provenance reaches the relaxations that placed its samples.
"""

from __future__ import annotations

from aiida import orm
from aiida.engine import calcfunction

__all__ = ['allocate_spacegroups', 'choose_spacegroups', 'validate_spacegroup_choice']


def validate_spacegroup_choice(value: orm.Str, _: object) -> str | None:
    from ..spacegroups import SpacegroupMethod

    methods = [method.value for method in SpacegroupMethod]
    if value.value in methods:
        return None
    return f'spacegroup_choice must be one of {", ".join(methods)}, not {value.value!r}'


@calcfunction
def choose_spacegroups(chemsys: orm.Str, count: orm.Int, method: orm.Str) -> dict[str, orm.Data]:
    """``count`` space groups for ``chemsys`` by ``method`` (``chemistry`` or ``top20``).

    Outputs ``spacegroups`` (best first) and ``report`` (method, reason, each group's score, and for ``chemistry`` its
    nearest training crystals with their Mendeleev-number distance).
    """
    from .. import spacegroups

    choice = spacegroups.choose_spacegroups(chemsys.value.split('-'), count.value, method.value)
    return {'spacegroups': orm.List(list(choice.spacegroups)), 'report': orm.Dict(choice.as_report())}


@calcfunction
def allocate_spacegroups(spacegroups: orm.List, num_samples: orm.Int, e_above_hull: orm.Float,
                         **tables: orm.List) -> dict[str, orm.Data]:
    """``num_samples`` shared among ``spacegroups`` by how often the model's relaxations in each (the rows of the
    phase-diagram ``tables`` whose ``source`` names the model) ended near the ``e_above_hull`` target
    (``spacegroups.allocate_samples``).

    Outputs ``samples`` (each group, as a string, to its samples: a phase-diagram run's ``samples_per_spacegroup``) and
    ``report`` (the target, each group's smoothed rate and the relaxations it was learned from)."""
    from .. import spacegroups as groups

    outcomes = [(row['spacegroup_requested'], row['e_above_hull']) for table in tables.values()
                for row in table.get_list() if row['e_above_hull'] is not None
                and row.get('spacegroup_requested') is not None and 'model' in (row.get('source') or '')]
    allocation = groups.allocate_samples(spacegroups.get_list(), outcomes, num_samples.value, e_above_hull.value)
    return {'samples': orm.Dict({str(group): count for group, count in allocation.counts.items()}),
            'report': orm.Dict(allocation.as_report())}
