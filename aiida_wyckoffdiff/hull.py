"""Formation energies on the Materials Project scale, reference convex hulls and e_above_hull.

How the scales are made consistent: the potential's total energy of a relaxed structure gets the MP2020
corrections (oxide/fluoride anion terms, GGA/GGA+U mixing terms where MP would have used +U) unless the potential
was trained on corrected energies already (CHGNet: ``LoadedPotential.includes_mp2020``), and the elemental
references are the same potential's energies of the elemental ground states in the MP data. The resulting formation
energy per atom is compared against hulls built from MP's own formation energies, which carry the same corrections.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .exceptions import ReferenceDataError
from .references import ElementalReference, elemental_references, elements_with_references, reference_entries
from .relax import DistanceToHull, RelaxOutcome, RelaxSettings, relax_structures

if TYPE_CHECKING:
    from pymatgen.analysis.phase_diagram import PhaseDiagram
    from pymatgen.core import Structure

    from .potentials import LoadedPotential

__all__ = [
    'HullDistance',
    'HullRow',
    'MPHull',
    'computed_entry',
    'corrected_energy',
    'elemental_energies',
    'elemental_energies_from',
    'elemental_entries',
    'formation_energy_per_atom',
    'hull_entries',
    'hull_rows',
    'merge_duplicates',
    'phase_diagram',
    'reference_phase_diagram',
    'write_entries',
]


def corrected_energy(structure: Structure, energy: float) -> float:
    """Total energy (eV) plus the MP2020 corrections MP would apply to a calculation of this structure.

    The potentials were trained on MP's raw GGA/GGA+U energies, so the +U setting is inferred as MP chooses it:
    U on the listed transition metals in oxides and fluorides.
    """
    processed = _mp2020_entry(structure, energy)
    # An entry MP2020 refuses (e.g. an anion it cannot assign) keeps its raw energy rather than being lost.
    return processed.energy if processed is not None else energy


def _mp2020_entry(structure: Structure, energy: float, **kwargs: Any) -> Any:
    """A ``ComputedStructureEntry`` with MP2020's named adjustments, or ``None`` where MP2020 refuses it."""
    from pymatgen.entries.computed_entries import ComputedStructureEntry

    compatibility = _compatibility()
    symbols = {element.symbol for element in structure.composition}
    anion = next((a for a in ('F', 'O') if a in symbols), None)
    hubbards = {symbol: u for symbol, u in compatibility.u_settings.get(anion, {}).items() if symbol in symbols}
    parameters = {'run_type': 'GGA+U' if hubbards else 'GGA', 'hubbards': hubbards}
    return compatibility.process_entry(ComputedStructureEntry(structure, energy, parameters=parameters, **kwargs))


def computed_entry(structure: Structure, energy: float, apply_mp2020: bool, entry_id: str, data: dict[str, Any]) -> Any:
    """A pymatgen ``ComputedStructureEntry`` of the potential's total energy (eV), on the MP scale.

    With ``apply_mp2020`` the entry carries MP2020's adjustments by name (its ``correction``); otherwise (CHGNet,
    trained on corrected energies) the energy carries them already and ``data['mp2020_in_energy']`` says so.
    """
    from pymatgen.entries.computed_entries import ComputedStructureEntry

    data = {**data, 'mp2020_in_energy': not apply_mp2020}
    if apply_mp2020 and (entry := _mp2020_entry(structure, energy, entry_id=entry_id, data=data)) is not None:
        return entry
    return ComputedStructureEntry(structure, energy, entry_id=entry_id, data=data)


def elemental_entries(
    elemental: dict[str, float],
    potential: str,
    checkpoint_sha256: str | None = None,
    sources: Mapping[str, str] | None = None,
) -> list[Any]:
    """One ``ComputedEntry`` per element at its reference energy per atom, so that the entries of a run and these
    make a ``PhaseDiagram`` on the potential's own scale.

    :param sources: where each element's reference structure came from (``ElementalReference.source``), kept in
        ``data['source']``.
    """
    from pymatgen.entries.computed_entries import ComputedEntry

    data = {'role': 'elemental_reference', 'potential': potential, 'checkpoint_sha256': checkpoint_sha256}
    sources = sources or {}
    return [
        ComputedEntry(element, energy, entry_id=f'reference_{element}', data=data | {'source': sources.get(element)})
        for element, energy in sorted(elemental.items())
    ]


def hull_entries(
    rows: Sequence[HullRow],
    structures: Sequence[Structure | None],
    names: Sequence[str],
    apply_mp2020: bool,
    extra: Sequence[dict[str, Any]] | None = None,
) -> list[Any]:
    """The hull table as ``ComputedStructureEntry`` objects: each row with its relaxed structure and total energy, the
    row itself (formation energy, e_above_hull, space groups, potential, duplicates) in ``data``, plus ``extra[i]``
    (e.g. the lineage). Failed rows are left out."""
    entries = []
    for i, (row, structure, name) in enumerate(zip(rows, structures, names, strict=True)):
        if structure is None or row.energy_per_atom is None:
            continue
        data = {'key': name, **row.as_dict(), **(extra[i] if extra else {})}
        entries.append(computed_entry(structure, row.energy_per_atom * len(structure), apply_mp2020, name, data))
    return entries


def write_entries(path: Path, entries: Sequence[Any]) -> Path:
    """``entries`` as a JSON list that ``monty.serialization.loadfn`` reads back as pymatgen entries."""
    from monty.json import MontyEncoder

    path.write_text(json.dumps(list(entries), cls=MontyEncoder, indent=1))
    return path


@lru_cache(maxsize=1)
def _compatibility() -> Any:
    from pymatgen.entries.compatibility import MaterialsProject2020Compatibility

    return MaterialsProject2020Compatibility(check_potcar=False)


def elemental_energies(
    potential: LoadedPotential, elements: Iterable[str], settings: RelaxSettings | None = None
) -> dict[str, float]:
    """Per-atom reference energy (eV/atom) of each element: the potential's relaxed MP ground state.

    Where the data lacks MP's ground-state polymorph, the lowest polymorph present stands in and its MP formation
    energy is subtracted, so the reference still sits at MP's ground state. Results are cached per checkpoint hash
    and settings in ``$WYCKOFFDIFF_CACHE_DIR`` (default ``~/.cache/aiida-wyckoffdiff``): solid O2 alone takes over a
    hundred optimizer steps, and every hull of every run needs it.
    """
    settings = settings or RelaxSettings()
    cache_file = _elemental_cache(potential, settings)
    cached = json.loads(cache_file.read_text()) if cache_file.is_file() else {}
    references = [r for r in elemental_references(tuple(elements)) if r.element not in cached]
    outcomes = relax_structures([r.structure for r in references], potential, settings)
    cached.update(elemental_energies_from(references, outcomes, potential.name))
    if references:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        cache_file.write_text(json.dumps(cached, indent=1, sort_keys=True))
    return {element: cached[element] for element in sorted(set(elements))}


def elemental_energies_from(
    references: Sequence[ElementalReference], outcomes: Sequence[RelaxOutcome | None], potential_name: str
) -> dict[str, float]:
    """Per-atom reference energies (eV/atom) from relaxations of the elemental ground states already done.

    :param outcomes: one per reference, in the same order; ``None`` where it was not relaxed.
    """
    energies = {}
    for reference, outcome in zip(references, outcomes, strict=True):
        if outcome is None or outcome.energy_per_atom is None:
            reason = outcome.reason if outcome is not None else 'not relaxed'
            raise ReferenceDataError(
                f'The {potential_name} potential cannot relax the {reference.element} reference structure '
                f'({reference.source}): {reason}'
            )
        energies[reference.element] = outcome.energy_per_atom - reference.formation_energy_per_atom
    return energies


def _elemental_cache(potential: LoadedPotential, settings: RelaxSettings) -> Path:
    from .data import CACHE_DIR_VARIABLE

    key = hashlib.sha256(f'{potential.checkpoint_sha256}{settings}'.encode()).hexdigest()[:16]
    cache = Path(os.environ.get(CACHE_DIR_VARIABLE) or Path.home() / '.cache' / 'aiida-wyckoffdiff')
    return cache / f'elemental-{potential.name}-{key}.json'


def formation_energy_per_atom(
    structure: Structure, energy: float, elemental: dict[str, float], apply_mp2020: bool = True
) -> float:
    """Formation energy in eV/atom from a total energy against ``elemental`` references.

    :param apply_mp2020: add the MP2020 corrections; ``False`` for potentials trained on corrected energies (CHGNet).
    """
    composition = structure.composition
    references = sum(amount * elemental[element.symbol] for element, amount in composition.items())
    total = corrected_energy(structure, energy) if apply_mp2020 else energy
    return (total - references) / composition.num_atoms


def phase_diagram(elements: Sequence[str], extra: Iterable[tuple[str, float, str]] = ()) -> PhaseDiagram:
    """Formation-energy phase diagram of the reference phases, plus ``extra`` ``(formula, e_form/atom, name)`` entries.

    Energies are formation energies, so each element enters with energy 0 (MP's ground state).
    """
    from pymatgen.analysis.phase_diagram import PDEntry, PhaseDiagram
    from pymatgen.core import Composition, Element

    table = reference_entries(tuple(elements))
    entries = [PDEntry(Composition({Element(e): 1}), 0.0, name=e, attribute='reference') for e in elements]
    for row in table.itertuples():
        composition = Composition(row.formula)
        entries.append(
            PDEntry(composition, row.formation_energy_per_atom * composition.num_atoms, row.material_id, 'reference')
        )
    for formula, energy, name in extra:
        composition = Composition(formula)
        entries.append(PDEntry(composition, energy * composition.num_atoms, name=name, attribute='generated'))
    return PhaseDiagram(entries)


def reference_phase_diagram(elements: Sequence[str]) -> PhaseDiagram:
    """The hull of the shipped MP reference phases alone."""
    return phase_diagram(tuple(sorted(elements)))


@dataclass
class HullRow:
    """One line of the results table; energies in eV/atom, ``None`` where the relaxation failed."""

    index: int
    formula: str
    chemsys: str
    label_requested: str | None
    spacegroup_requested: int | None
    spacegroup_found: int | None
    crystal_system_found: str | None
    energy_per_atom: float | None
    formation_energy_per_atom: float | None
    e_above_hull: float | None
    is_new: bool | None
    converged: bool
    potential: str
    checkpoint_sha256: str
    reason: str | None
    pruned: str | None = None
    """Why the relaxation stopped early (``RelaxOutcome.pruned``); its energy is that of the step it stopped at."""
    kept_spacegroup: bool | None = None
    """Whether the free stage kept the symmetric stage's space group; ``None`` where there was no free stage."""
    stage_spacegroups: list[int | None] = field(default_factory=list)
    """The space group after each relaxation stage (the symmetric one, then the free one where it ran)."""
    duplicate_of: str | None = None
    """Name of the row whose relaxed structure this one matches (``merge_duplicates``): one candidate, not two."""
    duplicates: list[str] = field(default_factory=list)
    """Names of the rows that relaxed to this row's structure; their lineages stay in the table and the graph."""
    source: str | None = None
    """What proposed the structure: ``model``, ``random`` or ``substitution`` (``model,random`` where both did)."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def merge_duplicates(rows: Sequence[HullRow], structures: Sequence[Structure | None], names: Sequence[str]) -> None:
    """Mark rows whose relaxed structures pymatgen's ``StructureMatcher`` (default tolerances) finds the same.

    Two protostructures often relax to one structure. Each group keeps its lowest-energy row as the candidate; the
    others get ``duplicate_of`` its name, and it lists them in ``duplicates``.

    :param structures: the relaxed structure of each row, ``None`` where the relaxation failed.
    :param names: how rows are named in ``duplicate_of``/``duplicates`` (the workflow's keys, or indices).
    """
    from pymatgen.analysis.structure_matcher import StructureMatcher

    relaxed = [i for i, row in enumerate(rows) if structures[i] is not None and row.energy_per_atom is not None]
    groups = StructureMatcher().group_structures([structures[i] for i in relaxed])
    position = {id(structures[i]): i for i in relaxed}
    for group in groups:
        first, *others = sorted((position[id(s)] for s in group), key=lambda i: rows[i].energy_per_atom)
        rows[first].duplicates = [names[i] for i in others]
        for i in others:
            rows[i].duplicate_of = names[first]


def _is_new(structure: Structure, chemsys: str) -> bool:
    from .symmetry import structure_label

    known = set(reference_entries(tuple(chemsys.split('-'))).query('chemsys == @chemsys')['label'])
    try:
        return structure_label(structure) not in known
    except Exception:  # noqa: BLE001 - a structure whose symmetry cannot be labelled cannot be matched either
        return True


def hull_rows(
    outcomes: Sequence[RelaxOutcome],
    elemental: dict[str, float],
    requested: Sequence[str | None] | None = None,
    apply_mp2020: bool = True,
) -> list[HullRow]:
    """Formation energy, e_above_hull (negative: below the reference hull) and novelty of every relaxed structure.

    :param outcomes: from ``relax_structures``.
    :param elemental: from ``elemental_energies`` with the same potential.
    :param requested: the protostructure label each structure was generated from, if any.
    :param apply_mp2020: ``not potential.includes_mp2020`` of the potential that relaxed them.
    """
    from .symmetry import Protostructure, spacegroup_info

    requested = requested or [None] * len(outcomes)
    rows = []
    for outcome, label in zip(outcomes, requested):
        structure = outcome.structure
        chemsys = '-'.join(sorted(e.symbol for e in structure.composition)) if structure else ''
        row = HullRow(
            index=outcome.index,
            formula=outcome.formula,
            chemsys=chemsys,
            label_requested=label,
            spacegroup_requested=Protostructure.from_label(label).spacegroup if label else outcome.spacegroup_initial,
            spacegroup_found=outcome.spacegroup_final,
            crystal_system_found=spacegroup_info(outcome.spacegroup_final).crystal_system
            if outcome.spacegroup_final
            else None,
            energy_per_atom=outcome.energy_per_atom,
            formation_energy_per_atom=None,
            e_above_hull=None,
            is_new=None,
            converged=outcome.converged,
            potential=outcome.potential,
            checkpoint_sha256=outcome.checkpoint_sha256,
            reason=outcome.reason,
            pruned=outcome.pruned,
            kept_spacegroup=outcome.kept_spacegroup,
            stage_spacegroups=[stage['spacegroup'] for stage in outcome.stages],
        )
        if structure is not None and outcome.energy is not None:
            if missing := sorted(set(chemsys.split('-')) - set(elemental)):
                row.reason = f'no elemental reference energy for {", ".join(missing)}: formation energy unknown'
            else:
                row.formation_energy_per_atom = formation_energy_per_atom(
                    structure, outcome.energy, elemental, apply_mp2020
                )
                try:
                    row.e_above_hull = _e_above_hull(chemsys, structure, row.formation_energy_per_atom)
                    row.is_new = _is_new(structure, chemsys)
                except ReferenceDataError as exception:
                    row.reason = str(exception)
        rows.append(row)
    return rows


def _e_above_hull(chemsys: str, structure: Structure, formation_energy: float) -> float:
    from pymatgen.analysis.phase_diagram import PDEntry

    diagram = _cached_reference_diagram(chemsys)
    entry = PDEntry(structure.composition, formation_energy * structure.composition.num_atoms)
    return float(diagram.get_decomp_and_e_above_hull(entry, allow_negative=True)[1])


@lru_cache(maxsize=64)
def _cached_reference_diagram(chemsys: str) -> PhaseDiagram:
    return reference_phase_diagram(tuple(chemsys.split('-')))


@dataclass(frozen=True)
class HullDistance:
    """e_above_hull (eV/atom) of a structure from its total energy, as the relaxation's pruning and free stage need.

    A plain object, so it travels to worker processes. ``None`` where an element has no reference energy or the
    chemical system no reference hull.

    :param elemental: per-atom reference energies (eV/atom), from ``elemental_energies`` with the same potential.
    :param apply_mp2020: ``not potential.includes_mp2020``.
    """

    elemental: dict[str, float]
    apply_mp2020: bool

    def __call__(self, structure: Structure, energy: float) -> float | None:
        elements = sorted(e.symbol for e in structure.composition)
        if set(elements) - set(self.elemental):
            return None
        formation = formation_energy_per_atom(structure, energy, self.elemental, self.apply_mp2020)
        try:
            return _e_above_hull('-'.join(elements), structure, formation)
        except ReferenceDataError:
            return None


@dataclass(frozen=True)
class MPHull:
    """The shipped MP hulls as ``relax.relax_all`` measures pruning and the free stage against them
    (``relax.HullReference``).

    :param apply_mp2020: ``not potential.includes_mp2020``.
    :param elemental: per-atom reference energies (eV/atom) where already known (then nothing is relaxed for them);
        ``None``: ``relax_all`` relaxes the elemental reference structures first.
    """

    apply_mp2020: bool
    elemental: Mapping[str, float] | None = None

    def reference_structures(self, elements: Sequence[str]) -> dict[str, Structure]:
        if self.elemental is not None:
            return {}
        return {r.element: r.structure for r in elemental_references(elements_with_references(elements))}

    def elemental_energies(self, relaxed: Mapping[str, RelaxOutcome]) -> dict[str, float]:
        if self.elemental is not None:
            return dict(self.elemental)
        references = elemental_references(relaxed)
        outcomes = [relaxed[r.element] for r in references]
        return elemental_energies_from(references, outcomes, outcomes[0].potential if outcomes else '')

    def distance(self, elemental: Mapping[str, float]) -> DistanceToHull:
        return HullDistance(dict(elemental), self.apply_mp2020)
