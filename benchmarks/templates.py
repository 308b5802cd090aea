"""Realization benchmark on held-out crystals: how close does each method's structure start to the real one?

For test-split crystals (never templates) whose element-free prototype a training crystal has, the protostructure
is realized by each method and compared with the real crystal, before any relaxation:

- ``template``: the most similar training crystal's geometry with the new elements, the template's volume scaled by
  the ratio of the atoms' volumes fitted to the training crystals (``templates.substitute``, the package's method);
- the same geometry with the template's volume, scaled by pymatgen's ``RLSVolumePredictor`` (radii ratios to the
  template) and by its ``DLSVolumePredictor`` (data-mined bond lengths): the alternatives to that volume;
- ``pyxtal`` and ``pyxtal, fitted volume``: a random PyXtal draw, as drawn and rescaled to the sum of the fitted
  volumes of its atoms;
- ``pyxtal, real lattice shapes``: a PyXtal draw in the lattice shape of a random training crystal of the group at the
  fitted volume (``realize(..., scale_volume=True)``, the package's PyXtal fallback), PyXtal's own where it cannot
  place the atoms.

Reported per method: the share of crystals whose realization matches the real one (pymatgen ``StructureMatcher``,
default tolerances), the median |V / V_real - 1|, the median elongation error |ln(e / e_real)| (e: longest over
shortest axis of the Niggli-reduced cell), and the coverage (test crystals with a training prototype); for
the PyXtal arms also the crystals not realized in 20 attempts, the draws whose atoms PyXtal could not place in a
real shape, and the mean seconds per crystal. The test crystals without a training prototype are realized by the
PyXtal arms alone (where the workflow uses PyXtal), reported apart.

    python benchmarks/templates.py [--crystals 300] [--output benchmarks/templates_results.json]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
import warnings
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PYXTAL_ARMS: dict[str, dict[str, bool]] = {
    'pyxtal': {},
    'pyxtal, fitted volume': {'scale_volume': True, 'real_shapes': False},
    'pyxtal, real lattice shapes': {'scale_volume': True, 'real_shapes': True},
}


def held_out(crystals: int, seed: int, data_dir: Path | None, dataset: Path | None) -> list[tuple]:
    """A seeded sample of the test split's crystals as ``(material_id, label, structure)``."""
    import pandas as pd
    from pymatgen.core import Structure

    from aiida_wyckoffdiff.data import MAIN_FILE, build_dataset, default_dataset_path, find_data_dir, load_dataset

    data_dir = find_data_dir(data_dir)
    dataset = dataset or default_dataset_path(data_dir)
    if not dataset.is_file():
        build_dataset(data_dir, output=dataset)
    test = load_dataset(dataset).query("split == 'test'")
    chosen = test.sample(n=min(crystals, len(test)), random_state=seed).set_index('material_id')['label']
    table = pd.read_csv(data_dir / MAIN_FILE, usecols=['material_id', 'cif'])
    table = table[table['material_id'].isin(chosen.index)]
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        structures = [Structure.from_str(cif, fmt='cif') for cif in table['cif']]
    return [(m, chosen[m], s) for m, s in zip(table['material_id'], structures, strict=True)]


def other_volumes(structure: Any, template: Any) -> dict[str, float | None]:
    """The volume of ``structure`` (a template's geometry with new elements) by pymatgen's two predictors."""
    from pymatgen.analysis.structure_prediction.volume_predictor import DLSVolumePredictor, RLSVolumePredictor

    volumes: dict[str, float | None] = {}
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        for name, predict in (('radius ratio', lambda: RLSVolumePredictor(check_isostructural=False).predict(
                structure, template)), ('bond lengths', lambda: DLSVolumePredictor().predict(structure))):
            try:
                volumes[name] = float(predict())
            except (ValueError, KeyError, ZeroDivisionError, TypeError):
                volumes[name] = None
    return volumes


def realizations(label: str, template: Any, seed: int, costs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """The candidate structure of every method (``None`` where it failed; only the PyXtal arms without a
    ``template``); each PyXtal arm's cost is appended to ``costs``."""
    from aiida_wyckoffdiff.exceptions import ProtostructureError
    from aiida_wyckoffdiff.realize import REAL_SHAPE_FAILED, realize
    from aiida_wyckoffdiff.symmetry import Protostructure
    from aiida_wyckoffdiff.templates import substitute

    protostructure = Protostructure.from_label(label)
    found: dict[str, Any] = {}
    if template is not None:
        try:
            found['template'] = substitute(protostructure, template)
        except ProtostructureError:
            found['template'] = None
    if found.get('template') is not None:
        unscaled = template.structure.copy()
        unscaled.replace_species(dict(zip(template.elements, protostructure.elements, strict=True)))
        found["template, template's volume"] = unscaled
        for name, volume in other_volumes(unscaled, template.structure).items():
            scaled = unscaled.copy()
            if volume is not None:
                scaled.scale_lattice(volume)
            found[f'template, {name}'] = scaled if volume is not None else None
    for method, options in PYXTAL_ARMS.items():
        started = time.perf_counter()
        result = realize(protostructure, seed=seed, attempts=20, **options)
        found[method] = result.structure
        costs[method].append({'seconds': time.perf_counter() - started, 'failed': not result.ok,
                              'shape_fallbacks': result.rejections.get(REAL_SHAPE_FAILED, 0)})
    return found


def elongation(structure: Any) -> float:
    """Longest over shortest axis of the Niggli-reduced cell: how far from equiaxed the lattice is, in any setting."""
    lengths = structure.lattice.get_niggli_reduced_lattice().abc
    return max(lengths) / min(lengths)


def median(values: list[float]) -> float | None:
    return round(float(np.median(values)), 3) if values else None


class Tally:
    """Per method: whether each realization matches its real crystal, the volume errors, and the PyXtal arms'
    costs (``realizations`` appends to ``costs``)."""

    def __init__(self) -> None:
        self.matches: dict[str, list[bool]] = defaultdict(list)
        self.volume_errors: dict[str, list[float]] = defaultdict(list)
        self.shape_errors: dict[str, list[float]] = defaultdict(list)
        self.costs: dict[str, list[dict[str, Any]]] = defaultdict(list)

    def add(self, found: dict[str, Any], real: Any, matcher: Any) -> None:
        for method, structure in found.items():
            self.matches[method].append(structure is not None and matcher.fit(structure, real))
            if structure is not None:
                self.volume_errors[method].append(abs(structure.volume / len(structure) / (real.volume / len(real)) - 1))
                self.shape_errors[method].append(abs(math.log(elongation(structure) / elongation(real))))

    def rows(self, methods: list[str]) -> list[dict[str, Any]]:
        return [{'method': m, 'crystals': len(self.matches[m]), 'matches_real': round(float(np.mean(self.matches[m])), 3)
                 if self.matches[m] else None, 'median_volume_error': median(self.volume_errors[m]),
                 'median_elongation_error': median(self.shape_errors[m])} for m in methods]

    def pyxtal_costs(self) -> dict[str, dict[str, Any]]:
        """Per PyXtal arm: crystals not realized, real-shape placement failures, and mean seconds per crystal."""
        return {method: {'not_realized': sum(c['failed'] for c in self.costs[method]),
                         'shape_placement_failures': sum(c['shape_fallbacks'] for c in self.costs[method]),
                         'mean_seconds': round(float(np.mean([c['seconds'] for c in self.costs[method]])), 3)
                         if self.costs[method] else None}
                for method in PYXTAL_ARMS}


def print_tables(rows: list[dict[str, Any]], costs: dict[str, dict[str, Any]]) -> None:
    print('| method | crystals | matches the real crystal | median volume error | median elongation error |')
    print('|---|---|---|---|---|')
    for row in rows:
        print(f"| {row['method']} | {row['crystals']} | {row['matches_real']} | {row['median_volume_error']} | "
              f"{row['median_elongation_error']} |")
    print('\n| PyXtal arm | not realized | real-shape placement failures | mean seconds per crystal |\n|---|---|---|---|')
    for method, cost in costs.items():
        print(f"| {method} | {cost['not_realized']} | {cost['shape_placement_failures']} | {cost['mean_seconds']} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--crystals', type=int, default=300, help='Test-split crystals sampled.')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--data-dir', type=Path)
    parser.add_argument('--dataset', type=Path)
    parser.add_argument('--quick', action='store_true', help='A CI-size run of 20 crystals.')
    parser.add_argument('--output', type=Path, help='Results file [default: benchmarks/templates_results.json; '
                        'with --quick, templates_quick.json in the temporary folder].')
    arguments = parser.parse_args()
    if arguments.quick:
        arguments.crystals = 20
    if arguments.output is None:
        quick = Path(tempfile.gettempdir()) / 'templates_quick.json'
        arguments.output = quick if arguments.quick else ROOT / 'benchmarks' / 'templates_results.json'
    from pymatgen.analysis.structure_matcher import StructureMatcher
    from tqdm import tqdm

    from aiida_wyckoffdiff.templates import shipped_templates

    library = shipped_templates()
    crystals = held_out(arguments.crystals, arguments.seed, arguments.data_dir, arguments.dataset)
    matcher = StructureMatcher()
    methods = ['template', "template, template's volume", 'template, radius ratio', 'template, bond lengths',
               *PYXTAL_ARMS]
    covered, uncovered = Tally(), Tally()
    for index, (_, label, real) in enumerate(tqdm(crystals, desc='held-out crystals')):
        templates = library.templates_for(label, 1)
        tally = covered if templates else uncovered
        found = realizations(label, templates[0] if templates else None, arguments.seed + index, tally.costs)
        tally.add(found, real, matcher)
    with_prototype = len(covered.matches['pyxtal'])
    document = {
        'command': ' '.join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        'test_crystals': len(crystals),
        'with_training_prototype': with_prototype,
        'distinct_prototypes_in_library': len(library.by_prototype),
        'rows': covered.rows(methods),
        'pyxtal_costs': covered.pyxtal_costs(),
        'without_training_prototype': {'rows': uncovered.rows(list(PYXTAL_ARMS)),
                                       'pyxtal_costs': uncovered.pyxtal_costs()},
    }
    arguments.output.write_text(json.dumps(document, indent=1) + '\n')
    print(f'{with_prototype} of {len(crystals)} test-split crystals have a training prototype\n')
    print_tables(document['rows'], document['pyxtal_costs'])
    print(f'\nThe {len(crystals) - with_prototype} without one (PyXtal only: where the workflow uses it)\n')
    print_tables(document['without_training_prototype']['rows'], document['without_training_prototype']['pyxtal_costs'])
    print(f'\nwrote {arguments.output}')


if __name__ == '__main__':
    main()
