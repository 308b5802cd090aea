"""``wyckoffdiff.dft_hull``: DFT relaxations of hull structures with Quantum ESPRESSO, and the hull they make.

Each structure and each elemental reference is relaxed by aiida-quantumespresso's ``PwRelaxWorkChain``, built
from its protocol with the same settings, so the formation energies are consistent. The DFT hull is the pymatgen
phase diagram of these energies alone: the Materials Project hull used by the potential is computed with another
code and other corrections, so DFT energies cannot be placed on it. The table reports, for each structure, its DFT
e_above_hull beside the potential's (against the MP hull) where that is known.

aiida-quantumespresso and aiida-pseudo are the optional ``dft`` extra; this module imports them only when the
work chain runs, so the rest of the package loads without them and the work chain exits saying what to install.
"""

from __future__ import annotations

from typing import Any

from aiida import orm
from aiida.engine import WorkChain, calcfunction

from .phase_diagram import REFERENCE_PREFIX, elemental_reference_structures

__all__ = ['DFT_EXTRA_HINT', 'DftHullWorkChain', 'dft_hull_table', 'require_dft_extra']

DFT_EXTRA_HINT = 'pip install aiida-wyckoffdiff[dft]'
RELAX_TYPES = ('none', 'positions', 'cell', 'shape', 'positions_shape', 'positions_cell')


def require_dft_extra() -> None:
    """Raise :class:`~aiida_wyckoffdiff.exceptions.ConfigurationError` naming the extra when it is not installed."""
    from ..exceptions import ConfigurationError

    try:
        import aiida_pseudo  # noqa: F401
        import aiida_quantumespresso  # noqa: F401
    except ImportError as exception:
        raise ConfigurationError(
            f'the DFT follow-up needs aiida-quantumespresso and aiida-pseudo ({exception}): {DFT_EXTRA_HINT}'
        ) from None


def _elements(structure: orm.StructureData) -> set[str]:
    return {kind.symbol for kind in structure.kinds}


def validate_relax_type(value: orm.Str, _: Any) -> str | None:
    if value.value not in RELAX_TYPES:
        return f'relax type {value.value!r} is not one of {", ".join(RELAX_TYPES)}'
    return None


def validate_reference_relax_types(value: orm.Dict, _: Any) -> str | None:
    unknown = {element: kind for element, kind in value.get_dict().items() if kind not in RELAX_TYPES}
    if unknown:
        return f'reference_relax_types {unknown} are not among {", ".join(RELAX_TYPES)}'
    return None


def _final_max_force(trajectory: orm.TrajectoryData | None) -> float | None:
    """Largest force (eV/Å) on any atom in the last step of a relaxation, where pw.x printed forces."""
    import numpy as np

    if trajectory is None or 'forces' not in trajectory.get_arraynames():
        return None
    return float(np.linalg.norm(trajectory.get_array('forces')[-1], axis=1).max())


@calcfunction
def dft_hull_table(
    relaxations: orm.Dict, potential_e_above_hull: orm.Dict | None = None, **relaxed: orm.Data
) -> dict[str, orm.Data]:
    """The DFT hull of the relaxed structures and references, and a row per structure comparing it with the potential.

    ``relaxed`` holds ``parameters_KEY``, ``structure_KEY`` and ``trajectory_KEY`` of each successful relaxation;
    references are keyed ``reference_<El>``. ``relaxations`` maps every key, relaxed or not, to
    ``{'formula', 'reason', 'exit_status', 'relax_pk'}``. Outputs ``table`` (structures only, in key order) and
    ``elemental_energies`` (DFT eV/atom of each reference).
    """
    from pymatgen.analysis.phase_diagram import PDEntry, PhaseDiagram

    by_key: dict[str, dict[str, orm.Data]] = {}
    for name, node in relaxed.items():
        kind, key = name.split('_', 1)
        by_key.setdefault(key, {})[kind] = node
    potential = potential_e_above_hull.get_dict() if potential_e_above_hull is not None else {}
    entries = {}
    for key, nodes in by_key.items():
        structure = nodes['structure'].get_pymatgen_structure()
        entries[key] = PDEntry(structure.composition, nodes['parameters']['energy'], name=key)
    elemental = {
        key.removeprefix(REFERENCE_PREFIX): entry.energy_per_atom
        for key, entry in entries.items()
        if key.startswith(REFERENCE_PREFIX)
    }
    computable = {
        key: entry
        for key, entry in entries.items()
        if {element.symbol for element in entry.composition} <= set(elemental)
    }
    diagram = PhaseDiagram(list(computable.values())) if elemental else None
    rows = []
    for key, record in sorted(relaxations.get_dict().items()):
        if key.startswith(REFERENCE_PREFIX):
            continue
        row: dict[str, Any] = {
            'key': key,
            **record,
            'potential_e_above_hull': potential.get(key),
            'dft_energy_per_atom': None,
            'dft_formation_energy_per_atom': None,
            'dft_e_above_hull': None,
            'difference': None,
            'final_max_force': None,
            'converged': key in by_key,
        }
        if key in by_key:
            entry = entries[key]
            row.update(
                dft_energy_per_atom=entry.energy_per_atom,
                final_max_force=_final_max_force(by_key[key].get('trajectory')),
            )
            if key in computable and diagram is not None:
                row['dft_formation_energy_per_atom'] = float(diagram.get_form_energy_per_atom(entry))
                row['dft_e_above_hull'] = float(diagram.get_e_above_hull(entry))
                if row['potential_e_above_hull'] is not None:
                    row['difference'] = row['dft_e_above_hull'] - row['potential_e_above_hull']
            else:
                missing = sorted({element.symbol for element in entry.composition} - set(elemental))
                row['reason'] = f'no DFT energy of the {", ".join(missing)} reference: formation energy unknown'
        rows.append(row)
    return {'table': orm.List(rows), 'elemental_energies': orm.Dict(elemental)}


class DftHullWorkChain(WorkChain):
    """Relax hull structures and their elemental references with pw.x and rebuild the hull from DFT energies."""

    @classmethod
    def define(cls, spec) -> None:  # noqa: ANN001 - aiida-core's spec type
        super().define(spec)
        spec.input_namespace(
            'structures',
            valid_type=orm.StructureData,
            dynamic=True,
            help='The structures to verify, e.g. the hull_structures of a wyckoffdiff.phase_diagram.',
        )
        spec.input_namespace(
            'references',
            valid_type=orm.StructureData,
            dynamic=True,
            required=False,
            help='Elemental reference structures by element symbol; the Materials Project ground '
            'state stands in for each element not given.',
        )
        spec.input(
            'potential_e_above_hull',
            valid_type=orm.Dict,
            required=False,
            help="The potential's e_above_hull (eV/atom, against the MP hull) by structure key, to compare with.",
        )
        spec.input('code', valid_type=orm.AbstractCode, help='A pw.x code (plugin quantumespresso.pw).')
        spec.input(
            'pseudo_family',
            valid_type=orm.Str,
            serializer=orm.to_aiida_type,
            help='Label of an aiida-pseudo family with recommended cutoffs: pseudopotentials and cutoffs.',
        )
        spec.input(
            'protocol',
            valid_type=orm.Str,
            serializer=orm.to_aiida_type,
            default=lambda: orm.Str('balanced'),
            help='PwRelaxWorkChain protocol: fast, balanced or stringent.',
        )
        spec.input(
            'overrides',
            valid_type=orm.Dict,
            serializer=orm.to_aiida_type,
            required=False,
            help='Overrides of the protocol, as PwRelaxWorkChain.get_builder_from_protocol takes them.',
        )
        spec.input(
            'options',
            valid_type=orm.Dict,
            serializer=orm.to_aiida_type,
            required=False,
            help='metadata.options of every pw.x job (resources, wallclock, MPI).',
        )
        spec.input(
            'relax_type',
            valid_type=orm.Str,
            serializer=orm.to_aiida_type,
            validator=validate_relax_type,
            default=lambda: orm.Str('positions_cell'),
            help=f'One of {", ".join(RELAX_TYPES)}.',
        )
        spec.input(
            'reference_relax_types',
            valid_type=orm.Dict,
            serializer=orm.to_aiida_type,
            required=False,
            validator=validate_reference_relax_types,
            help='Relax type by element for references that need another, e.g. {"O": "positions"} for an O2 '
            'molecule in a box, whose cell must not shrink.',
        )
        spec.input(
            'initial_relaxation',
            valid_type=orm.Bool,
            serializer=orm.to_aiida_type,
            default=lambda: orm.Bool(True),
            help="PwRelaxWorkChain's looser first relaxation; False skips it, e.g. for structures the potential "
            'has relaxed already.',
        )
        spec.outline(cls.setup, cls.run_relax, cls.run_hull, cls.results)
        spec.output_namespace(
            'relaxed', valid_type=orm.StructureData, dynamic=True, help='DFT-relaxed structures and references, by key.'
        )
        spec.output(
            'table',
            valid_type=orm.List,
            help="A row per structure: DFT energy, formation energy and e_above_hull beside the potential's.",
        )
        spec.output('elemental_energies', valid_type=orm.Dict, help='DFT energy (eV/atom) of each elemental reference.')
        spec.exit_code(
            201,
            'ERROR_PSEUDO_FAMILY_NOT_FOUND',
            message='No pseudopotential family {label} in this profile: '
            'create it with `wyckoffdiff dft-setup --family {label}` or `aiida-pseudo install`.',
        )
        spec.exit_code(
            202,
            'ERROR_PSEUDO_FAMILY_LACKS_ELEMENTS',
            message='Pseudopotential family {label} has no pseudopotential for {elements}: no structure can run.',
        )
        spec.exit_code(203, 'ERROR_DFT_EXTRA_MISSING', message='{message}')
        spec.exit_code(
            204, 'ERROR_PROTOCOL_INPUTS', message='No relaxation could be set up from the protocol: {reason}'
        )
        spec.exit_code(410, 'ERROR_NO_DFT_HULL', message='No structure got a DFT e_above_hull: {reasons}')
        spec.exit_code(
            710,
            'WARNING_SOME_STRUCTURES_FAILED',
            message='The DFT hull lacks {failed}; their reasons are in the table.',
        )

    def setup(self):  # noqa: ANN201 - an ExitCode or None
        """Check the extra and the family; drop, with a reason, each structure the family cannot describe."""
        from aiida.common.exceptions import NotExistent

        from ..exceptions import ConfigurationError

        try:
            require_dft_extra()
        except ConfigurationError as exception:
            return self.exit_codes.ERROR_DFT_EXTRA_MISSING.format(message=str(exception))
        from aiida_pseudo.groups.family import PseudoPotentialFamily

        label = self.inputs.pseudo_family.value
        try:
            family = orm.QueryBuilder().append(PseudoPotentialFamily, filters={'label': label}).one()[0]
        except NotExistent:
            return self.exit_codes.ERROR_PSEUDO_FAMILY_NOT_FOUND.format(label=label)
        available = set(family.elements)
        self.ctx.relaxations = {}
        self.ctx.structures = {}
        for key, structure in self.inputs.structures.items():
            if missing := sorted(_elements(structure) - available):
                self._record(key, structure, f'pseudopotential family {label} has no {", ".join(missing)}')
                self.report(f'{key} ({structure.get_formula()}) skipped: family {label} lacks {", ".join(missing)}')
            else:
                self.ctx.structures[key] = structure
        if not self.ctx.structures:
            missing = sorted(set().union(*(_elements(s) for s in self.inputs.structures.values())) - available)
            return self.exit_codes.ERROR_PSEUDO_FAMILY_LACKS_ELEMENTS.format(label=label, elements=', '.join(missing))
        return None

    def _record(
        self, key: str, structure: orm.StructureData, reason: str | None, relax: orm.ProcessNode | None = None
    ) -> None:
        """What became of ``key``: its formula, the PwRelaxWorkChain and its exit status, why it has no DFT energy."""
        self.ctx.relaxations[key] = {
            'formula': structure.get_pymatgen().composition.reduced_formula,
            'reason': reason,
            'relax_pk': relax.pk if relax else None,
            'exit_status': relax.exit_status if relax else None,
        }

    def _references(self) -> dict[str, orm.StructureData]:
        """The given references plus the MP ground state of every other element the structures contain."""
        needed = sorted(set().union(*(_elements(s) for s in self.ctx.structures.values())))
        given = dict(self.inputs.references.items()) if 'references' in self.inputs else {}
        references = {f'{REFERENCE_PREFIX}{element}': given[element] for element in needed if element in given}
        if missing := [element for element in needed if element not in given]:
            references.update(elemental_reference_structures(orm.Str('-'.join(missing))))
        return references

    def run_relax(self):  # noqa: ANN201
        """One PwRelaxWorkChain per structure and reference, all from the same protocol, family and overrides."""
        from aiida_quantumespresso.common.types import RelaxType
        from aiida_quantumespresso.workflows.protocols.utils import recursive_merge
        from aiida_quantumespresso.workflows.pw.relax import PwRelaxWorkChain

        family = {'pseudo_family': self.inputs.pseudo_family.value}
        user = self.inputs.overrides.get_dict() if 'overrides' in self.inputs else {}
        overrides = recursive_merge({'base_relax': family, 'base_init_relax': family}, user)
        options = self.inputs.options.get_dict() if 'options' in self.inputs else None
        by_element = self.inputs.reference_relax_types.get_dict() if 'reference_relax_types' in self.inputs else {}
        self.ctx.submitted = {}
        for key, structure in {**self._references(), **self.ctx.structures}.items():
            relax_type = self.inputs.relax_type.value
            if key.startswith(REFERENCE_PREFIX):
                relax_type = by_element.get(key.removeprefix(REFERENCE_PREFIX), relax_type)
            try:
                builder = PwRelaxWorkChain.get_builder_from_protocol(
                    self.inputs.code,
                    structure,
                    protocol=self.inputs.protocol.value,
                    overrides=overrides,
                    options=options,
                    relax_type=RelaxType(relax_type),
                )
            except ValueError as exception:
                self._record(key, structure, f'protocol inputs: {exception}')
                self.report(f'{key}: {exception}')
                continue
            if not self.inputs.initial_relaxation.value:
                builder.pop('base_init_relax')
            builder.metadata.call_link_label = f'relax_{key}'
            node = self.submit(builder)
            self.ctx.submitted[key] = node.uuid
            self.to_context(**{f'relax_{key}': node})
        if not self.ctx.submitted:
            return self.exit_codes.ERROR_PROTOCOL_INPUTS.format(
                reason=next(iter(self.ctx.relaxations.values()))['reason']
            )
        return None

    def run_hull(self) -> None:
        relaxed: dict[str, orm.Data] = {}
        for key in self.ctx.submitted:
            node = self.ctx[f'relax_{key}']
            reason = (
                None
                if node.is_finished_ok
                else f'PwRelaxWorkChain<{node.pk}> failed: [{node.exit_status}] {node.exit_message}'
            )
            self._record(key, node.inputs.structure, reason, node)
            if node.is_finished_ok:
                relaxed[f'parameters_{key}'] = node.outputs.output_parameters
                relaxed[f'structure_{key}'] = (
                    node.outputs.output_structure if 'output_structure' in node.outputs else node.inputs.structure
                )
                if 'output_trajectory' in node.outputs:
                    relaxed[f'trajectory_{key}'] = node.outputs.output_trajectory
            else:
                self.report(f'{key}: {reason}')
        inputs = {'relaxations': orm.Dict(self.ctx.relaxations), **relaxed}
        if 'potential_e_above_hull' in self.inputs:
            inputs['potential_e_above_hull'] = self.inputs.potential_e_above_hull
        self.ctx.hull = dft_hull_table(**inputs)
        self.ctx.relaxed = {
            key.removeprefix('structure_'): node for key, node in relaxed.items() if key.startswith('structure_')
        }

    def results(self):  # noqa: ANN201
        self.out('relaxed', self.ctx.relaxed)
        self.out('table', self.ctx.hull['table'])
        self.out('elemental_energies', self.ctx.hull['elemental_energies'])
        rows = self.ctx.hull['table'].get_list()
        for row in rows:
            if row['dft_e_above_hull'] is not None:
                potential = row['potential_e_above_hull']
                versus = f', potential {potential:+.3f}' if potential is not None else ''
                self.report(
                    f'{row["key"]} {row["formula"]}: DFT e_above_hull {row["dft_e_above_hull"]:+.3f} eV/atom{versus}'
                )
        failed = [f'{row["key"]} ({row["formula"]})' for row in rows if row['dft_e_above_hull'] is None]
        failed += [
            key for key, record in self.ctx.relaxations.items() if key.startswith(REFERENCE_PREFIX) and record['reason']
        ]
        if not any(row['dft_e_above_hull'] is not None for row in rows):
            return self.exit_codes.ERROR_NO_DFT_HULL.format(
                reasons='; '.join(f'{row["key"]}: {row["reason"]}' for row in rows)
            )
        if failed:
            return self.exit_codes.WARNING_SOME_STRUCTURES_FAILED.format(failed=', '.join(failed))
        return None
