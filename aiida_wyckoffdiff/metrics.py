"""Sample-quality metrics of a generation run, as the field reports them.

The definitions follow the common re-evaluations of symmetry-aware generators (docs/results.md):

- **validity**: structural (every interatomic distance > 0.5 Å in the realized structure) and compositional
  (some assignment of common oxidation states makes the composition neutral: pymatgen's ``oxi_state_guesses``,
  the same test as SMACT's charge balance for these small cells);
- **plausible composition**: the same test with peroxide (O⁻) and superoxide (O₂⁻) oxygen allowed where every
  cation is an alkali or alkaline-earth metal, since Li2O2, BaO2 and KO2 are real ground states;
  **SMACT validity** is SMACT's own screen (``smact_validity``), the number the
  CDVAE, DiffCSP and MatterGen papers report;
- **recall** of held-out protostructures: the share of held-out labels found among the samples of their request;
- **distribution distances** of per-crystal counts (atoms, occupied orbits, elements) to a reference split:
  Wasserstein distance (in the count's own units) and Jensen-Shannon distance (base 2) of the histograms;
- **uniqueness**: distinct canonical protostructure labels / samples;
- **novelty**: distinct labels absent from the training labels / distinct labels;
- **S.U.N.**: samples whose relaxed structure is stable (e_above_hull <= ``stability``), unique (the first sample
  with that relaxed label) and novel (relaxed label not among the known labels), over all samples;
- **P1 share** of the samples and the **space-group distribution distance** (Jensen-Shannon, base 2: 0 for equal
  distributions, 1 for disjoint ones) to the training distribution;
- **symmetry preservation**: of the relaxed structures, the share whose space group, and whose crystal system,
  is still the requested one.

Everything here is plain Python on labels, space groups and table rows; the AiiDA layer gathers those
(:mod:`aiida_wyckoffdiff.reporting`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pymatgen.core import Composition, Structure

__all__ = [
    'DistributionDistance',
    'ScanMetrics',
    'SymmetryPreservation',
    'charge_balanced',
    'composition_plausible',
    'distribution_distance',
    'ionic_system',
    'novelty',
    'p1_share',
    'recall',
    'scan_metrics',
    'smact_valid',
    'spacegroup_distance',
    'structurally_valid',
    'sun_keys',
    'symmetry_preservation',
    'uniqueness',
]

MIN_DISTANCE = 0.5
"""Å: two atoms closer than this make a structure invalid (the field's convention)."""

STABILITY = 0.1
"""eV/atom above the reference hull that still counts as stable (MatterGen's convention for ML potentials)."""


def structurally_valid(structure: Structure, min_distance: float = MIN_DISTANCE) -> bool:
    """Whether every two atoms (nearest periodic images) are farther apart than ``min_distance`` Å."""
    return bool(structure.is_valid(tol=min_distance))


def _composition(composition: Composition | str) -> Composition:
    from pymatgen.core import Composition as PymatgenComposition

    return PymatgenComposition(composition)


def _needs_no_ions(composition: Composition) -> bool:
    """Elements and alloys: charge balance does not apply, so they pass every composition check."""
    return len(composition) == 1 or all(element.is_metal for element in composition)


def charge_balanced(composition: Composition) -> bool:
    """Whether common oxidation states can make ``composition`` neutral; elements and alloys count as balanced."""
    composition = _composition(composition)
    if _needs_no_ions(composition):
        return True
    # max_sites=-1 works on the reduced formula whatever its size; a bound (say -50) makes pymatgen raise for
    # generated formulas such as Li26O25 that do not reduce below it.
    return bool(composition.oxi_state_guesses(max_sites=-1))


@lru_cache(maxsize=4096)
def _plausible_formula(formula: str) -> bool:
    from pymatgen.core import Composition

    composition = Composition(formula)
    # One kind of oxygen per compound (oxide or peroxide), else Li13O10 would pass as 3 oxide plus 7 peroxide ions.
    if composition.oxi_state_guesses(oxi_states_override={'O': (-2,)}, max_sites=-1):
        return True
    # Peroxides and superoxides of other cations are hardly crystals: 70 of the dataset's 4,403 metal oxides would
    # pass only as one (BaBiO3, RuO4: mixed or high valence in truth), while TiO6 or MgAlO5 made up a third to a half
    # of the chains of a Ti-O or Al-Mg-O scan.
    cations = [element for element in composition if element.symbol != 'O']
    if 'O' not in composition or not all(element.is_alkali or element.is_alkaline for element in cations):
        return False
    if composition.oxi_state_guesses(oxi_states_override={'O': (-1,)}, max_sites=-1):
        return True
    if composition['O'] % 2:
        return False
    # A superoxide O2- unit carries the charge of one fluoride: test that stand-in for every O pair.
    units = {str(element): amount for element, amount in composition.items() if str(element) != 'O'}
    units['F'] = units.get('F', 0) + composition['O'] / 2
    return bool(Composition(units).oxi_state_guesses(max_sites=-1))


def composition_plausible(composition: Composition | str) -> bool:
    """Charge balance with common oxidation states and oxide oxygen, or, where every cation is an alkali or
    alkaline-earth metal, peroxide or superoxide oxygen; elements and alloys pass."""
    composition = _composition(composition)
    return _needs_no_ions(composition) or _plausible_formula(composition.reduced_formula)


def ionic_system(elements: Iterable[str]) -> bool:
    """Whether a chemical system holds an anion former (a chalcogen, a halogen, N or P), so its crystals are ionic
    enough for charge balance to say something: 79-97 % of the test split's distinct compositions with such an element
    are plausible (2-4 elements), against 29-54 % of carbides, borides, silicides and the like (docs/discovery.md)."""
    from pymatgen.core import Element

    return any(
        element.is_chalcogen or element.is_halogen or element.symbol in ('N', 'P') for element in map(Element, elements)
    )


def smact_valid(composition: Composition | str) -> bool:
    """SMACT's charge-neutrality and electronegativity screen (``smact.screening.smact_validity``, its defaults)."""
    from smact.screening import smact_validity

    return bool(smact_validity(_composition(composition).reduced_formula))


def recall(held_out: Sequence[str], samples: Sequence[Iterable[str]]) -> float:
    """Share of ``held_out[i]`` found among ``samples[i]``, the labels generated for its request."""
    if len(held_out) != len(samples):
        raise ValueError(f'{len(held_out)} held-out labels but {len(samples)} sample lists')
    return sum(label in set(found) for label, found in zip(held_out, samples)) / len(held_out) if held_out else 0.0


@dataclass(frozen=True)
class DistributionDistance:
    """How far a generated count distribution lies from a reference one; medians for a first look."""

    wasserstein: float
    jensen_shannon: float
    median: float
    reference_median: float


def distribution_distance(generated: Sequence[float], reference: Sequence[float]) -> DistributionDistance:
    """Wasserstein and Jensen-Shannon (base 2, over integer bins) distances of two samples of a count."""
    import numpy as np
    from scipy.spatial.distance import jensenshannon
    from scipy.stats import wasserstein_distance

    if not len(generated) or not len(reference):
        raise ValueError('both samples need at least one value')
    top = int(max(max(generated), max(reference))) + 1
    histograms = [np.bincount(np.asarray(values, dtype=int), minlength=top) for values in (generated, reference)]
    return DistributionDistance(
        wasserstein=float(wasserstein_distance(generated, reference)),
        jensen_shannon=float(jensenshannon(*histograms, base=2)),
        median=float(np.median(generated)),
        reference_median=float(np.median(reference)),
    )


def uniqueness(labels: Sequence[str]) -> float:
    """Distinct labels over all labels (1.0 when every sample differs); 0 for no samples."""
    return len(set(labels)) / len(labels) if labels else 0.0


def novelty(labels: Iterable[str], known: set[str]) -> float:
    """Share of the distinct ``labels`` that are not in ``known`` (e.g. the training labels)."""
    distinct = set(labels)
    return len(distinct - known) / len(distinct) if distinct else 0.0


def p1_share(spacegroups: Sequence[int | None]) -> float:
    """Share of space groups that are P1 (number 1); ``None`` (undetermined) counts as not P1."""
    return sum(1 for group in spacegroups if group == 1) / len(spacegroups) if spacegroups else 0.0


def spacegroup_distance(generated: Iterable[int], reference: Mapping[int, int] | Iterable[int]) -> float:
    """Jensen-Shannon distance (base 2) between two space-group distributions over the 230 groups.

    :param reference: counts per space group, or the space groups themselves.
    """
    import numpy as np
    from scipy.spatial.distance import jensenshannon

    def histogram(counts: Mapping[int, int]) -> np.ndarray:
        values = np.zeros(231)
        for group, count in counts.items():
            values[int(group)] += count
        return values

    reference_counts = reference if isinstance(reference, Mapping) else Counter(reference)
    generated_counts = Counter(generated)
    if not generated_counts or not reference_counts:
        raise ValueError('both distributions need at least one space group')
    return float(jensenshannon(histogram(generated_counts), histogram(reference_counts), base=2))


@dataclass(frozen=True)
class SymmetryPreservation:
    """Of ``relaxed`` structures with a requested and a found space group, how many kept each."""

    relaxed: int
    spacegroup_kept: int
    crystal_system_kept: int

    @property
    def spacegroup_share(self) -> float:
        return self.spacegroup_kept / self.relaxed if self.relaxed else 0.0

    @property
    def crystal_system_share(self) -> float:
        return self.crystal_system_kept / self.relaxed if self.relaxed else 0.0


def symmetry_preservation(pairs: Iterable[tuple[int, int | None]]) -> SymmetryPreservation:
    """Count the (requested, found) space-group pairs whose group, or crystal system, survived relaxation.

    A relaxed structure whose space group could not be determined (``None``) counts as not kept.
    """
    from .symmetry import spacegroup_info

    relaxed = kept = system_kept = 0
    for requested, found in pairs:
        relaxed += 1
        if found is None:
            continue
        kept += requested == found
        system_kept += spacegroup_info(requested).crystal_system == spacegroup_info(found).crystal_system
    return SymmetryPreservation(relaxed, kept, system_kept)


def sun_keys(
    rows: Sequence[Mapping[str, Any]], relaxed_labels: Mapping[str, str | None], known: set[str], stability: float = STABILITY
) -> list[str]:
    """Keys of the rows that are stable, unique and novel, in row order.

    :param rows: results-table rows with ``key`` and ``e_above_hull`` (eV/atom, ``None`` if the relaxation failed).
    :param relaxed_labels: canonical label of each relaxed structure by key; ``None`` where it could not be labelled.
    :param known: labels that are not novel (the training data, or every known phase).
    """
    seen: set[str] = set()
    keys = []
    for row in rows:
        label = relaxed_labels.get(row['key'])
        if label is None or row['e_above_hull'] is None or row['e_above_hull'] > stability:
            continue
        if label not in seen and label not in known:
            keys.append(row['key'])
        seen.add(label)
    return keys


@dataclass(frozen=True)
class ScanMetrics:
    """The metrics of one scan; shares are fractions in [0, 1].

    ``samples`` to ``spacegroup_distance`` describe the model's samples (``realized``: those of its distinct labels
    that were placed); ``relaxed`` onwards the scan's relaxed structures, whatever proposed them (the random or
    substitution protostructures a scan may add, ``reporting.by_source`` splits them)."""

    samples: int
    distinct: int
    realized: int
    relaxed: int
    valid_structure: float
    valid_composition: float
    uniqueness: float
    novelty: float
    p1_share: float
    spacegroup_distance: float
    stable: int
    sun: int
    sun_rate: float
    spacegroup_kept: float
    crystal_system_kept: float
    stability: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def scan_metrics(
    samples: Sequence[str],
    realized: Mapping[str, Structure],
    rows: Sequence[Mapping[str, Any]],
    relaxed_labels: Mapping[str, str | None],
    training_labels: set[str],
    training_spacegroups: Mapping[int, int],
    stability: float = STABILITY,
) -> ScanMetrics:
    """All metrics of a scan.

    :param samples: the generated protostructure labels, one per sample, duplicates included.
    :param realized: the realized structure of each label that could be placed, by label; labels that are not among
        ``samples`` (another source's) are left out.
    :param rows: the results table (one row per relaxed structure, ``spacegroup_requested``/``spacegroup_found``).
    :param relaxed_labels: canonical label of each relaxed structure by row key.
    :param training_labels: labels of the training data (novelty, S.U.N.).
    :param training_spacegroups: space-group counts of the training data (distribution distance).
    """
    from .symmetry import Protostructure

    sampled = set(samples)
    distinct = sorted(sampled)
    realized = {label: structure for label, structure in realized.items() if label in sampled}
    compositions = {label: Protostructure.from_label(label).composition for label in distinct}
    relaxed = [row for row in rows if row['e_above_hull'] is not None]
    preservation = symmetry_preservation(
        (row['spacegroup_requested'], row['spacegroup_found']) for row in relaxed if row['spacegroup_requested']
    )
    sun = sun_keys(rows, relaxed_labels, training_labels, stability)
    spacegroups = [Protostructure.from_label(label).spacegroup for label in samples]
    return ScanMetrics(
        samples=len(samples),
        distinct=len(distinct),
        realized=len(realized),
        relaxed=len(relaxed),
        valid_structure=sum(structurally_valid(s) for s in realized.values()) / len(distinct) if distinct else 0.0,
        valid_composition=sum(charge_balanced(c) for c in compositions.values()) / len(distinct) if distinct else 0.0,
        uniqueness=uniqueness(samples),
        novelty=novelty(samples, training_labels),
        p1_share=p1_share(spacegroups),
        spacegroup_distance=spacegroup_distance(spacegroups, training_spacegroups),
        stable=sum(1 for row in relaxed if row['e_above_hull'] <= stability),
        sun=len(sun),
        sun_rate=len(sun) / len(samples) if samples else 0.0,
        spacegroup_kept=preservation.spacegroup_share,
        crystal_system_kept=preservation.crystal_system_share,
        stability=stability,
    )
