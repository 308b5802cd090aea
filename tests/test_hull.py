"""Reference hulls from the shipped MP table, formation energies from CHGNet, the results table and the plots."""

from __future__ import annotations

import pytest

from aiida_wyckoffdiff.exceptions import ReferenceDataError
from aiida_wyckoffdiff.hull import corrected_energy, elemental_energies, hull_rows, reference_phase_diagram
from aiida_wyckoffdiff.references import elements_with_references, reference_entries
from aiida_wyckoffdiff.relax import relax_structures

from .relax_fixtures import _one_torch_thread, chgnet, li2o, rutile  # noqa: F401


def _stable(elements: list[str]) -> set[str]:
    return {e.composition.reduced_formula for e in reference_phase_diagram(elements).stable_entries}


def test_li_o_reference_hull_has_the_stable_phases_of_the_data():
    """README: Li2O and Li2O2 are stable; with no LiO2/LiO3 in the data, LiO8 lands on the hull too."""
    assert _stable(['Li', 'O']) == {'Li', 'O2', 'Li2O', 'Li2O2', 'LiO8'}


def test_ti_o_reference_hull_reproduces_mp_e_above_hull():
    """README: the Ti-O hull from the data gives back every e_above_hull the main file states."""
    from pymatgen.analysis.phase_diagram import PDEntry
    from pymatgen.core import Composition

    diagram = reference_phase_diagram(['Ti', 'O'])
    table = reference_entries(['Ti', 'O']).query("chemsys == 'O-Ti'").dropna(subset=['e_above_hull'])
    assert len(table) >= 17
    for row in table.itertuples():
        composition = Composition(row.formula)
        entry = PDEntry(composition, row.formation_energy_per_atom * composition.num_atoms)
        assert diagram.get_e_above_hull(entry) == pytest.approx(row.e_above_hull, abs=2e-3), row.material_id
    stable = set(table.query('e_above_hull == 0')['formula'])
    assert stable <= _stable(['Ti', 'O'])


def test_missing_reference_data_is_a_clear_error():
    absent = next(symbol for symbol in ('Rn', 'Fr', 'Ra', 'At', 'Po') if not elements_with_references([symbol]))
    with pytest.raises(ReferenceDataError, match=f'No reference phase for {absent}'):
        reference_entries(['Li', absent])


def test_mp2020_corrections(li2o):  # noqa: F811
    """Oxides get the anion correction per O; iron oxide also the GGA/GGA+U mixing term; Li metal nothing."""
    from pymatgen.core import Lattice, Structure

    oxygens = li2o.composition['O']
    oxide = corrected_energy(li2o, -50.0) + 50.0
    wustite = Structure.from_spacegroup(225, Lattice.cubic(4.3), ['Fe', 'O'], [[0, 0, 0], [0.5, 0.5, 0.5]])
    metal = Structure(Lattice.cubic(3.4), ['Li', 'Li'], [[0, 0, 0], [0.5, 0.5, 0.5]])
    assert oxide == pytest.approx(-0.687 * oxygens, abs=0.01)
    assert corrected_energy(wustite, -50.0) + 50.0 < -0.687 * wustite.composition['O'] - 1.0
    assert corrected_energy(metal, -3.0) == -3.0


@pytest.fixture(scope='module', autouse=True)
def _cache_dir(tmp_path_factory):
    """One elemental-energy cache for the module, outside the user's home; the CLI test reuses it."""
    with pytest.MonkeyPatch.context() as patch:
        path = tmp_path_factory.mktemp('cache')
        patch.setenv('WYCKOFFDIFF_CACHE_DIR', str(path))
        yield path


@pytest.fixture(scope='module')
def elemental(chgnet):  # noqa: F811
    return elemental_energies(chgnet, ['Li', 'O', 'Ti'])


def test_elemental_energies_are_cached_per_checkpoint(chgnet, elemental, _cache_dir):  # noqa: F811
    import json

    (cache_file,) = _cache_dir.glob('elemental-chgnet-*.json')
    assert json.loads(cache_file.read_text()) == elemental
    assert elemental_energies(chgnet, ['O', 'Li']) == {'Li': elemental['Li'], 'O': elemental['O']}
    # Energies per atom of the relaxed ground states: metals near -1.9 (Li) and -7.8 (Ti), solid O2 near -4.9.
    assert elemental['Ti'] < elemental['O'] < elemental['Li'] < 0


def test_formation_energies_near_mp_and_e_above_hull_consistent(chgnet, elemental, li2o, rutile):  # noqa: F811
    """CHGNet (trained on MP2020-corrected energies) puts Li2O and rutile within 0.15 eV/atom of MP."""
    outcomes = relax_structures([li2o, rutile], chgnet)
    rows = hull_rows(outcomes, elemental, apply_mp2020=not chgnet.includes_mp2020)
    table = reference_entries(['Li', 'O', 'Ti'])
    for row, material_id in zip(rows, ('mp-1960', 'mp-2657')):
        mp = table.set_index('material_id').loc[material_id, 'formation_energy_per_atom']
        assert row.formation_energy_per_atom == pytest.approx(mp, abs=0.15)
        assert row.converged and row.potential == 'chgnet' and len(row.checkpoint_sha256) == 64
    # Li2O has a structure in the data (mp-1960), rutile only an energy: by structure, only rutile is new.
    assert [r.is_new for r in rows] == [False, True]
    li2o_row = rows[0]
    # Li2O is on the reference hull, so its e_above_hull is the potential's deviation from MP's value.
    assert li2o_row.e_above_hull == pytest.approx(li2o_row.formation_energy_per_atom - (-2.0616), abs=1e-3)


def test_rows_keep_failures_and_unknown_elements(chgnet, elemental, li2o):  # noqa: F811
    from pymatgen.core import Lattice, Structure

    overlapping = Structure(Lattice.cubic(4.0), ['Li', 'O'], [[0, 0, 0], [0.05, 0, 0]])
    sodium_oxide = Structure.from_spacegroup(225, Lattice.cubic(5.5), ['Na', 'O'], [[0.25, 0.25, 0.25], [0, 0, 0]])
    rows = hull_rows(relax_structures([overlapping, li2o, sodium_oxide], chgnet), elemental, apply_mp2020=False)
    assert 'overlapping' in rows[0].reason and rows[0].formation_energy_per_atom is None
    assert rows[1].reason is None and rows[1].e_above_hull is not None
    assert 'no elemental reference energy for Na' in rows[2].reason


def test_plots_are_written(tmp_path, chgnet, elemental, li2o, rutile):  # noqa: F811
    from pymatgen.core import Lattice, Structure

    from aiida_wyckoffdiff.plots import plot_hull, plot_symmetry_heatmap

    li2o2 = Structure.from_spacegroup(
        194, Lattice.hexagonal(3.14, 7.65), ['Li', 'Li', 'O'], [[0, 0, 0], [1 / 3, 2 / 3, 0.25], [1 / 3, 2 / 3, 0.85]]
    )
    rows = hull_rows(
        relax_structures([li2o, rutile, li2o2], chgnet), elemental, ['A2B_cF12_225_c_a:Li-O', None, None], False
    )
    written = plot_hull(rows, 'Li-O', tmp_path / 'hull_Li-O') + plot_hull(rows, 'Li-O-Ti', tmp_path / 'hull_Li-O-Ti')
    written += plot_hull(rows, 'Li-Mg-O-Ti', tmp_path / 'hull_Li-Mg-O-Ti')  # pymatgen's tetrahedron
    written += plot_symmetry_heatmap(rows, tmp_path / 'heatmap') + plot_symmetry_heatmap(
        rows, tmp_path / 'sg', by='spacegroup'
    )
    for path in written:
        assert path.stat().st_size > 10_000, path
    assert 'plotly' in (tmp_path / 'hull_Li-O.html').read_text()[:100_000].lower()
    with pytest.raises(ValueError, match='two to four elements'):
        plot_hull(rows, 'Li', tmp_path / 'x')


def test_energy_distribution_splits_by_charge_balance(tmp_path) -> None:
    from dataclasses import replace

    from aiida_wyckoffdiff.hull import HullRow
    from aiida_wyckoffdiff.plots import energy_distribution, plot_energy_distribution

    row = HullRow(0, 'Li2O', 'Li-O', 'A2B_cF12_225_c_a:Li-O', 225, 225, 'cubic', -4.0, -2.0, 0.05, True, True,
                  'chgnet', 'sha', None)
    rows = [
        row,
        replace(row, e_above_hull=-0.02),  # below the reference hull: the first bin
        replace(row, formula='Li3O4', e_above_hull=0.35),
        replace(row, formula='LiO8', e_above_hull=7.5),  # beyond the range: the last bin
        replace(row, formula='Li3O4', e_above_hull=None, reason='collapsed'),  # not relaxed: not counted
        replace(row, label_requested=None, spacegroup_requested=None),  # a reference, not generated
    ]
    edges, balanced, unbalanced = energy_distribution(rows)
    assert edges[0] == 0.0 and edges[-1] == pytest.approx(2.0) and len(edges) == len(balanced) + 1 == 21
    assert balanced[0] == 2 and sum(balanced) == 2
    assert unbalanced[3] == 1 and unbalanced[-1] == 1 and sum(unbalanced) == 2
    for path in plot_energy_distribution(rows, tmp_path / 'energy'):
        assert path.stat().st_size > 5_000, path


def test_stage_heatmap_counts_each_stage(tmp_path) -> None:
    """Fig. 2 before and after the free stage: each panel counts its own structures by requested group."""
    from dataclasses import replace

    from aiida_wyckoffdiff.hull import HullRow
    from aiida_wyckoffdiff.plots import plot_stage_heatmap, symmetry_fractions

    row = HullRow(0, 'Li2O', 'Li-O', 'A2B_cF12_225_c_a:Li-O', 225, 225, 'cubic', -4.0, -2.0, 0.05, True, True,
                  'chgnet', 'sha', None, stage_spacegroups=[225])
    rows = [
        row,  # no free stage: only in the first panel
        replace(row, stage_spacegroups=[225, 12]),  # kept its group in the first stage, monoclinic after the second
        replace(row, label_requested='A2B_oP12_62_2c_c:Li-O', spacegroup_requested=62, stage_spacegroups=[62, 62]),
        replace(row, spacegroup_requested=62, stage_spacegroups=[None]),  # failed in the first stage
        replace(row, label_requested=None, spacegroup_requested=None, stage_spacegroups=[229, 229]),  # a reference
    ]
    categories, counts, fractions = symmetry_fractions([225, 225, 62], [225, 12, None], [62, 225])
    assert categories[-1] == 'failed' and counts.sum() == 3
    assert counts[categories.index('cubic'), 1] == 1 and counts[categories.index('monoclinic'), 1] == 1
    assert fractions[categories.index('failed'), 0] == 1.0 and fractions[:, 1].sum() == pytest.approx(1.0)
    written = plot_stage_heatmap(rows, tmp_path / 'stages')
    assert [path.suffix for path in written] == ['.png', '.html']
    html = written[1].read_text()
    assert 'after the symmetric stage (4)' in html and 'after the free stage (2)' in html
    with pytest.raises(ValueError, match='no generated structure had a free stage'):
        plot_stage_heatmap(rows[:1], tmp_path / 'none')
    with pytest.raises(ValueError, match='crystal_system or spacegroup'):
        symmetry_fractions([225], [225], [225], by='lattice')


def test_cli_relax_then_hull(tmp_path, elemental, li2o):  # noqa: F811
    """Files and labels in, failures reported per input, then the table and plots from the relaxed file (and from the
    one JSON document the command wrote before JSON Lines)."""
    import json

    import pandas as pd
    from click.testing import CliRunner
    from pymatgen.core import Lattice, Structure

    from aiida_wyckoffdiff.cli import main
    from aiida_wyckoffdiff.results_file import read_results

    li2o.to(filename=str(tmp_path / 'Li2O.cif'))
    Structure(Lattice.cubic(4.0), ['Li', 'O'], [[0, 0, 0], [0.05, 0, 0]]).to(filename=str(tmp_path / 'bad.cif'))
    # A label with a template (the hexagonal one) is realized once, from it; one without, twice by PyXtal, and the
    # lower after the pre-relaxation is relaxed.
    inputs = [str(tmp_path / 'Li2O.cif'), str(tmp_path / 'bad.cif'), 'AB_hP8_194_ac_f:Li-O', 'A2B_hP3_191_c_a:Li-O']
    relaxed = tmp_path / 'relaxed.jsonl'
    runner = CliRunner()
    result = runner.invoke(main, ['relax', *inputs, '--candidates', '2', '--output', str(relaxed)])
    assert result.exit_code == 0, result.output
    document = read_results(relaxed.read_text())
    assert document['potential'] == 'chgnet' and len(document['checkpoint_sha256']) == 64 and document['complete']
    first, bad, templated, drawn = document['structures']
    assert first['converged'] and first['spacegroup_final'] == 225
    assert 'overlapping' in bad['reason']
    assert templated['label_requested'] == 'AB_hP8_194_ac_f:Li-O' and templated['candidate_scores'] == []
    assert drawn['label_requested'] == 'A2B_hP3_191_c_a:Li-O' and len(drawn['candidate_scores']) == 2
    assert all(0 < steps <= 30 for steps in drawn['candidate_prerelax_steps'])  # PRERELAX's limit
    result = runner.invoke(main, ['hull', str(relaxed), '--output-dir', str(tmp_path / 'hull')])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(tmp_path / 'hull' / 'table.csv')
    assert not table.loc[0, 'is_new']
    assert table.loc[0, 'formation_energy_per_atom'] == pytest.approx(-2.06, abs=0.15)
    assert 'overlapping' in table.loc[1, 'reason']
    for name in ('hull_Li-O.png', 'hull_Li-O.html', 'symmetry_heatmap.png', 'table.json'):
        assert (tmp_path / 'hull' / name).stat().st_size > 0
    sources = json.loads((tmp_path / 'hull' / 'table.json').read_text())['elemental_sources']
    assert set(sources) == {'Li', 'O'} and all(source.startswith('mp-') for source in sources.values())
    # What the relax command wrote before JSON Lines, one JSON document named relaxed.json, is still read.
    old = tmp_path / 'relaxed.json'
    old.write_text(json.dumps({k: v for k, v in document.items() if k not in ('elemental_energies', 'references')}))
    assert read_results(old.read_text())['structures'] == document['structures']
    result = runner.invoke(main, ['hull', str(old), '--output-dir', str(tmp_path / 'hull_old')])
    assert result.exit_code == 0, result.output
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / 'hull_old' / 'table.csv'), table)
    from monty.serialization import loadfn

    entries = loadfn(tmp_path / 'hull' / 'entries.json')  # the two that relaxed, then the Li and O references
    assert [e.entry_id for e in entries][-2:] == ['reference_Li', 'reference_O'] and len(entries) == len(table) - 1 + 2
    # A file an interrupted run left behind: its finished structures are placed, with a warning saying so.
    interrupted = tmp_path / 'interrupted.jsonl'
    lines = relaxed.read_text().splitlines()
    first_line = next(line for line in lines if '"index": 0,' in line)
    interrupted.write_text(f'{lines[0]}\n{first_line}\n{{"kind": "struct')  # killed while writing the next line
    result = runner.invoke(main, ['hull', str(interrupted), '--output-dir', str(tmp_path / 'partial')])
    assert result.exit_code == 0, result.output
    assert 'interrupted relax run: only its 1 finished structures are placed' in result.output
    assert len(pd.read_csv(tmp_path / 'partial' / 'table.csv')) == 1


def test_entries_make_the_rows_phase_diagram(tmp_path, chgnet, elemental, li2o, rutile):  # noqa: F811
    """The exported ComputedStructureEntry objects with the elemental ones give each row's formation energy back in
    pymatgen's PhaseDiagram, read from the file; with MP2020 applied the oxide correction is a named adjustment."""
    from monty.serialization import loadfn
    from pymatgen.analysis.phase_diagram import PhaseDiagram
    from pymatgen.entries.computed_entries import ComputedEntry, ComputedStructureEntry

    from aiida_wyckoffdiff.hull import elemental_entries, hull_entries, write_entries

    outcomes = relax_structures([li2o, rutile], chgnet)
    structures = [o.structure for o in outcomes]
    for apply_mp2020 in (False, True):
        rows = hull_rows(outcomes, elemental, ['A2B_cF12_225_c_a:Li-O', None], apply_mp2020=apply_mp2020)
        entries = hull_entries(rows, structures, ['li2o', 'rutile'], apply_mp2020, extra=[{'lineage': ['x']}, {}])
        path = write_entries(tmp_path / f'entries_{apply_mp2020}.json', entries + elemental_entries(elemental, 'chgnet'))
        loaded = loadfn(path)
        assert [type(e) for e in loaded] == [ComputedStructureEntry] * 2 + [ComputedEntry] * 3
        assert loaded[0].data['label_requested'] == 'A2B_cF12_225_c_a:Li-O' and loaded[0].data['lineage'] == ['x']
        assert loaded[0].data['mp2020_in_energy'] is not apply_mp2020
        assert loaded[0].uncorrected_energy == pytest.approx(rows[0].energy_per_atom * len(structures[0]))
        diagram = PhaseDiagram(loaded)
        for entry, row in zip(loaded[:2], rows):
            assert diagram.get_form_energy_per_atom(entry) == pytest.approx(row.formation_energy_per_atom, abs=1e-6)
        oxide = [a for a in loaded[0].energy_adjustments if 'oxide' in a.name]
        assert bool(oxide) is apply_mp2020
        if apply_mp2020:
            assert loaded[0].correction == pytest.approx(-0.687 * structures[0].composition['O'], abs=0.01)


def test_structures_that_relax_to_one_are_one_candidate(chgnet, elemental, li2o, rutile):  # noqa: F811
    """Li2O from two different starting lattices relaxes to one structure: the lower-energy row is the candidate and
    names the other, which points back to it, so both lineages stay in the table."""
    from pymatgen.core import Lattice, Structure

    from aiida_wyckoffdiff.hull import merge_duplicates

    stretched = Structure.from_spacegroup(225, Lattice.cubic(4.8), ['Li', 'O'], [[0.25, 0.25, 0.25], [0, 0, 0]])
    outcomes = relax_structures([li2o, rutile, stretched], chgnet)
    rows = hull_rows(outcomes, elemental, apply_mp2020=False)
    merge_duplicates(rows, [o.structure for o in outcomes], ['a', 'b', 'c'])
    names = {id(rows[0]): 'a', id(rows[2]): 'c'}
    kept, duplicate = sorted((rows[0], rows[2]), key=lambda row: row.energy_per_atom)
    assert kept.duplicates == [names[id(duplicate)]] and kept.duplicate_of is None
    assert duplicate.duplicate_of == names[id(kept)] and duplicate.duplicates == []
    assert rows[1].duplicates == [] and rows[1].duplicate_of is None
