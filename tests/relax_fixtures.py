"""Structures and potentials shared by the relaxation and hull tests (imported by ``conftest.py``)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope='session', autouse=True)
def _one_torch_thread() -> None:
    """Two shared cores: one thread per process is faster than two, and keeps other jobs alive (BLAS too)."""
    import torch

    from aiida_wyckoffdiff.relax import single_threaded_linear_algebra

    torch.set_num_threads(1)
    single_threaded_linear_algebra()


@pytest.fixture(scope='session')
def li2o():
    """Anti-fluorite Li2O (Fm-3m), conventional cell, lattice a bit off MP's 4.65 Å so the cell has to relax."""
    from pymatgen.core import Lattice, Structure

    return Structure.from_spacegroup(225, Lattice.cubic(4.5), ['Li', 'O'], [[0.25, 0.25, 0.25], [0, 0, 0]])


@pytest.fixture(scope='session')
def rutile():
    """Rutile TiO2 (P4_2/mnm) with the oxygen parameter off its relaxed value."""
    from pymatgen.core import Lattice, Structure

    return Structure.from_spacegroup(136, Lattice.tetragonal(4.6, 3.0), ['Ti', 'O'], [[0, 0, 0], [0.29, 0.29, 0]])


@pytest.fixture(scope='session')
def spinel():
    """MgAl2O4 spinel (Fd-3m, origin choice 1: Mg 8a, Al 16d, O 32e with x = 0.39)."""
    from pymatgen.core import Lattice, Structure

    coordinates = [[0, 0, 0], [0.625, 0.625, 0.625], [0.39, 0.39, 0.39]]
    return Structure.from_spacegroup(227, Lattice.cubic(8.1), ['Mg', 'Al', 'O'], coordinates)


@pytest.fixture(scope='session')
def chgnet():
    from aiida_wyckoffdiff.potentials import load_potential

    return load_potential('chgnet')
