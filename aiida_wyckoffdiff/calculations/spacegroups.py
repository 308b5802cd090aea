"""``wyckoffdiff.choose_spacegroups``: the space groups a phase-diagram scan samples, and why, in the graph.

A calcfunction of a moment (``aiida_wyckoffdiff.spacegroups``): its inputs are the chemical system, the number of
groups and the method; its outputs the groups the generate jobs are given and a report of each group's weight and
the training crystals nearest to the request, so a scan's provenance says how its groups were chosen.
"""

from __future__ import annotations

from aiida import orm
from aiida.engine import calcfunction

__all__ = ['choose_spacegroups', 'validate_spacegroup_choice']


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
