"""Li-O and Ti-O end to end: the potential's formation-energy error on MP phases, then hulls of a generated set.

1. Every Li-O and Ti-O phase of the shared data that has both a structure and an MP formation energy is relaxed
   with the potential; the mean absolute error of its formation energies against MP's is printed.
2. The protostructures of those phases (the dataset's own) are realized with fresh random free parameters,
   relaxed and placed on the reference hulls: the results table and the plots go to ``--output``.

Usage: ``python examples/hull_li_o_ti_o.py [--relaxer chgnet] [--realizations 2] [--output docs/images]``
"""

from __future__ import annotations

import argparse
from pathlib import Path

SYSTEMS = ({'Li', 'O'}, {'O', 'Ti'})


def reference_structures():
    """MP rows of the two systems with a structure and an MP-20 formation energy (main file, then extra file)."""
    import pandas as pd
    from pymatgen.core import Structure

    from aiida_wyckoffdiff.data import EXTRA_FILE, MAIN_FILE, find_data_dir

    data_dir = find_data_dir()
    rows = pd.concat([pd.read_csv(data_dir / MAIN_FILE), pd.read_csv(data_dir / EXTRA_FILE)], ignore_index=True)
    rows = rows.dropna(subset=['formation_energy_per_atom'])
    rows = rows[rows['elements'].map(lambda e: set(e.split()) in SYSTEMS)]
    return rows, [Structure.from_str(cif, fmt='cif') for cif in rows['cif']]


def mean_absolute_errors(rows, known) -> None:
    """Print the potential's formation energy next to MP's for each phase, and the MAE per system."""
    import pandas as pd

    errors = pd.DataFrame(
        {
            'material_id': rows['material_id'].to_numpy(),
            'formula': rows['formula'].to_numpy(),
            'mp': rows['formation_energy_per_atom'].to_numpy(),
            'potential': [r.formation_energy_per_atom for r in known],
        }
    )
    errors['error'] = errors['potential'] - errors['mp']
    print(errors.round(3).to_string(index=False))
    for system, group in errors.groupby(errors['formula'].str.contains('Li')):
        name = 'Li-O' if system else 'Ti-O'
        mae, bias = group['error'].abs().mean(), group['error'].mean()
        print(f'{name}: MAE {mae:.3f} eV/atom over {len(group)} phases (mean error {bias:+.3f})')


def main() -> None:
    import pandas as pd
    import torch

    from aiida_wyckoffdiff.hull import elemental_energies, hull_rows
    from aiida_wyckoffdiff.plots import plot_hull, plot_symmetry_heatmap
    from aiida_wyckoffdiff.potentials import load_potential
    from aiida_wyckoffdiff.realize import realize
    from aiida_wyckoffdiff.relax import RelaxSettings, relax_structures
    from aiida_wyckoffdiff.symmetry import Protostructure

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--relaxer', default='chgnet')
    parser.add_argument('--realizations', type=int, default=2, help='random realizations per protostructure')
    parser.add_argument('--output', type=Path, default=Path('docs/images'))
    parser.add_argument('--steps', type=int, default=300, help='optimizer steps at most per structure')
    parser.add_argument('--skip-mae', action='store_true', help='only the generated set and its plots')
    args = parser.parse_args()
    settings = RelaxSettings(steps=args.steps)
    torch.set_num_threads(1)
    potential = load_potential(args.relaxer)
    elemental = elemental_energies(potential, ['Li', 'O', 'Ti'])
    apply_mp2020 = not potential.includes_mp2020

    rows, structures = reference_structures()
    if not args.skip_mae:
        mean_absolute_errors(
            rows, hull_rows(relax_structures(structures, potential, settings), elemental, None, apply_mp2020)
        )

    labels = sorted({Protostructure.from_structure(s).label for s in structures if len(s.composition) > 1})
    starts, requested = [], []
    for label in labels:
        for seed in range(args.realizations):
            result = realize(label, seed=seed)
            if result.ok:
                starts.append(result.structure)
                requested.append(label)
    generated = hull_rows(relax_structures(starts, potential, settings), elemental, requested, apply_mp2020)
    args.output.mkdir(parents=True, exist_ok=True)
    table = pd.DataFrame([r.as_dict() for r in generated])
    table.to_csv(args.output / 'li_o_ti_o_generated.csv', index=False)
    print(
        table[
            [
                'formula',
                'spacegroup_requested',
                'spacegroup_found',
                'formation_energy_per_atom',
                'e_above_hull',
                'is_new',
            ]
        ]
        .round(3)
        .to_string()
    )
    for chemsys in ('Li-O', 'O-Ti'):
        plot_hull(generated, chemsys, args.output / f'hull_{chemsys}')
    plot_symmetry_heatmap(generated, args.output / 'symmetry_heatmap_li_o_ti_o')
    plot_symmetry_heatmap(generated, args.output / 'spacegroup_heatmap_li_o_ti_o', by='spacegroup')


if __name__ == '__main__':
    main()
