"""PyXtal realization: the requested symmetry comes out, seeded, with failures explained."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from aiida_wyckoffdiff.exceptions import ProtostructureError
from aiida_wyckoffdiff.realize import realize, realize_many
from aiida_wyckoffdiff.symmetry import Protostructure, structure_label

from .conftest import SPINEL_LABEL


def test_spinel_realizes_with_its_label() -> None:
    result = realize(SPINEL_LABEL, seed=0)
    assert result.ok, result.reason
    assert result.reason is None
    assert 1 <= result.attempts <= 100
    assert structure_label(result.structure) == SPINEL_LABEL
    assert len(result.structure) == 56
    distances = result.structure.distance_matrix[np.triu_indices(56, 1)]
    assert distances.min() > 0.5


def test_realization_is_seeded() -> None:
    first, again, other = (realize(SPINEL_LABEL, seed=seed) for seed in (7, 7, 8))
    assert first.structure.lattice.abc == again.structure.lattice.abc
    assert np.allclose(first.structure.frac_coords, again.structure.frac_coords)
    assert first.structure.lattice.abc != other.structure.lattice.abc


def test_symmetry_that_cannot_survive_is_rejected_with_a_reason() -> None:
    """One atom in P1 is always detected with inversion (or more), so no candidate can match the request."""
    result = realize('A_aP1_1_a:Li', attempts=4, seed=0)
    assert not result.ok
    assert result.attempts == 4
    assert sum(result.rejections.values()) == 4
    assert all(cause.startswith('came out as A_') for cause in result.rejections)
    assert 'came out as' in result.reason


def test_pyxtal_places_atoms_no_closer_than_the_bond_check_allows() -> None:
    """PyXtal's closest distances are the bond check's, so no placement is drawn only to be rejected for close atoms:
    with PyXtal's own, looser ones, 4 of the first 8 here were. This fixed-coordinate arrangement of Er and Ni always
    comes out as the smaller AlB2-type cell, which is what every candidate is rejected for now, and after
    ``FIXED_MISMATCHES`` of them no more are drawn."""
    from aiida_wyckoffdiff.realize import FIXED_MISMATCHES

    result = realize('A2B_hP6_194_cd_a:Er-Ni', attempts=20, seed=5)
    assert result.attempts == FIXED_MISMATCHES
    assert result.rejections == {'came out as A2B_hP3_191_c_b:Er-Ni': FIXED_MISMATCHES}
    assert 'no candidate in 3 attempts matched' in result.reason


def test_a_protostructure_pyxtal_cannot_place_is_not_drawn_again(monkeypatch) -> None:
    """Of K candidates, the others are not drawn once PyXtal gave up placing one's atoms (each give-up can cost a
    minute of its retries); one that merely came out as another label still gets its other seeds."""
    import aiida_wyckoffdiff.realize as realization
    from aiida_wyckoffdiff.candidates import choose_realizations
    from aiida_wyckoffdiff.realize import MAX_PLACEMENT_FAILURES, RealizationResult

    crowded, special = (Protostructure.from_label(label) for label in (SPINEL_LABEL, 'A_aP1_1_a:Li'))
    seeds: dict[str, list[int]] = {crowded.label: [], special.label: []}

    def failing(protostructure, attempts, seed, **_):
        seeds[protostructure.label].append(seed)
        placed = protostructure is special  # the one atom is placed every time, and comes out as P-1
        return RealizationResult(protostructure, seed, attempts=attempts if placed else MAX_PLACEMENT_FAILURES,
                                 reason='came out as P-1' if placed else 'PyXtal could not place the atoms')

    monkeypatch.setattr(realization, 'realize', failing)
    unused = SimpleNamespace(name='CHGNet')  # nothing is realized, so nothing is pre-relaxed
    choices = choose_realizations([crowded, special], potential=unused, candidates=3, attempts=10)
    assert seeds == {crowded.label: [0], special.label: [3, 4, 5]}
    assert [choice.reason for choice in choices] == ['PyXtal could not place the atoms', 'came out as P-1']
    assert all(choice.structure is None for choice in choices)


def test_bad_requests_raise() -> None:
    with pytest.raises(ProtostructureError, match='attempts must be at least 1'):
        realize(SPINEL_LABEL, attempts=0)
    with pytest.raises(ProtostructureError, match='unknown element'):
        realize('AB_cF8_225_a_b:Li-Qq')


def test_batch_keeps_order_and_does_not_depend_on_processes(sample_structures) -> None:
    labels = [structure_label(sample_structures[mid]) for mid in ('mp-1215', 'mp-390', 'mp-1071163', 'mp-72')]
    serial = realize_many(labels, seed=3, processes=1, progress=False)
    parallel = realize_many(labels, seed=3, processes=2, progress=False)
    assert [r.protostructure.label for r in serial] == labels
    for one, other in zip(serial, parallel, strict=True):
        assert one.ok and other.ok
        assert np.allclose(one.structure.lattice.matrix, other.structure.lattice.matrix)
        assert structure_label(one.structure) == one.protostructure.label


def test_realizes_dataset_protostructures(sample_structures) -> None:
    """Most real protostructures realize within the default budget; failures say why."""
    labels = sorted({structure_label(s) for s in sample_structures.values()})[:40]
    results = realize_many([Protostructure.from_label(label) for label in labels], seed=0, processes=2, progress=False)
    for result in results:
        if result.ok:
            assert structure_label(result.structure) == result.protostructure.label
        else:
            assert result.reason.startswith('no candidate in')
    assert sum(r.ok for r in results) >= 0.9 * len(results)
