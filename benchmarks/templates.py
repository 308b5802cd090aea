"""Realization benchmark on held-out crystals: how close does each method's structure start to the real one?

For test-split crystals (never templates) whose element-free prototype a training crystal has, the protostructure
is realized by each method and compared with the real crystal, before any relaxation:

- ``template``: the most similar training crystal's geometry with the new elements, the template's volume scaled by
  the ratio of the atoms' volumes fitted to the training crystals (``templates.substitute``, the package's method);
- the same geometry with the template's volume, scaled by pymatgen's ``RLSVolumePredictor`` (radii ratios to the
  template) and by its ``DLSVolumePredictor`` (data-mined bond lengths): the alternatives to that volume;
- ``pyxtal`` and ``pyxtal, fitted volume``: a random PyXtal draw, as drawn and rescaled to the sum of the fitted
  volumes of its atoms.

Reported per method: the share of crystals whose realization matches the real one (pymatgen ``StructureMatcher``,
default tolerances), the median |V / V_real - 1|, and the coverage (test crystals with a training prototype).

    python benchmarks/templates.py [--crystals 300] [--output benchmarks/templates_results.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


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


def realizations(label: str, template: Any, seed: int) -> dict[str, Any]:
    """The candidate structure of every method (``None`` where it failed)."""
    from aiida_wyckoffdiff.exceptions import ProtostructureError
    from aiida_wyckoffdiff.realize import realize
    from aiida_wyckoffdiff.symmetry import Protostructure
    from aiida_wyckoffdiff.templates import substitute

    protostructure = Protostructure.from_label(label)
    found: dict[str, Any] = {}
    try:
        found['template'] = substitute(protostructure, template)
    except ProtostructureError:
        found['template'] = None
    if found['template'] is not None:
        unscaled = template.structure.copy()
        unscaled.replace_species(dict(zip(template.elements, protostructure.elements, strict=True)))
        found["template, template's volume"] = unscaled
        for name, volume in other_volumes(unscaled, template.structure).items():
            scaled = unscaled.copy()
            if volume is not None:
                scaled.scale_lattice(volume)
            found[f'template, {name}'] = scaled if volume is not None else None
    found['pyxtal'] = realize(protostructure, seed=seed, attempts=20).structure
    found['pyxtal, fitted volume'] = realize(protostructure, seed=seed, attempts=20, scale_volume=True).structure
    return found


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
    methods = ['template', "template, template's volume", 'template, radius ratio', 'template, bond lengths', 'pyxtal',
               'pyxtal, fitted volume']
    matches: dict[str, list[bool]] = {m: [] for m in methods}
    volume_errors: dict[str, list[float]] = {m: [] for m in methods}
    covered = 0
    for index, (_, label, real) in enumerate(tqdm(crystals, desc='held-out crystals')):
        templates = library.templates_for(label, 1)
        if not templates:
            continue
        covered += 1
        for method, structure in realizations(label, templates[0], arguments.seed + index).items():
            matches[method].append(structure is not None and matcher.fit(structure, real))
            if structure is not None:
                volume_errors[method].append(abs(structure.volume / len(structure) / (real.volume / len(real)) - 1))
    rows = [{'method': m, 'crystals': len(matches[m]), 'matches_real': round(float(np.mean(matches[m])), 3),
             'median_volume_error': round(float(np.median(volume_errors[m])), 3) if volume_errors[m] else None}
            for m in methods]
    document = {
        'command': ' '.join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        'test_crystals': len(crystals),
        'with_training_prototype': covered,
        'distinct_prototypes_in_library': len(library.by_prototype),
        'rows': rows,
    }
    arguments.output.write_text(json.dumps(document, indent=1) + '\n')
    print(f'{covered} of {len(crystals)} test-split crystals have a training prototype\n')
    print('| method | crystals | matches the real crystal | median volume error |')
    print('|---|---|---|---|')
    for row in rows:
        print(f"| {row['method']} | {row['crystals']} | {row['matches_real']} | {row['median_volume_error']} |")
    print(f'\nwrote {arguments.output}')


if __name__ == '__main__':
    main()
