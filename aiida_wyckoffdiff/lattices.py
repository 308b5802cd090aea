"""Lattice shapes of real crystals, per space group, for PyXtal's random realization.

PyXtal draws a lattice of any shape its crystal system allows (axis ratios up to ~10), which makes relaxations long
and loses symmetry. Real crystals of a space group span a far narrower range, so a PyXtal draw can instead take the
shape (axis ratios and angles) of a random training crystal of the requested group, at the predicted volume.

A shape holds only the parameters free in PyXtal's lattice type of the group (``pyxtal.symmetry.Group.lattice_type``,
the ITA standard setting: unique axis b for monoclinic, hexagonal axes for trigonal and rhombohedral groups):

==============  ===================================
lattice type    free parameters
==============  ===================================
cubic           none
tetragonal      c/a
hexagonal       c/a (γ = 120°)
trigonal        c/a (hexagonal axes, γ = 120°)
orthorhombic    b/a, c/a
monoclinic      b/a, c/a, β
triclinic       b/a, c/a, α, β, γ
==============  ===================================

The shapes ship in the package (``resources/lattice_shapes.json.gz``, written by :func:`build_lattice_shapes` from
the shipped template library, i.e. training-split crystals only): finding each crystal's standard cell takes about a
minute for the ~24,000 templates, too long to redo in every process that realizes one structure.
"""

from __future__ import annotations

import functools
import gzip
import json
import math
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .exceptions import ProtostructureError
from .symmetry import spacegroup_info

if TYPE_CHECKING:
    import numpy as np
    from pyxtal.lattice import Lattice

    from .templates import Template, TemplateLibrary

__all__ = ['LatticeShapes', 'build_lattice_shapes', 'draw_lattice', 'lattice_shape', 'shipped_lattice_shapes']

LATTICE_SHAPES_FILE = 'lattice_shapes.json.gz'
MIN_GROUP_SHAPES = 5
"""A space group with fewer training crystals draws from all of its lattice type's (crystal system's) shapes."""
SYMPREC = 0.1
"""Å: the tolerance the protostructure labels are detected with (:func:`.symmetry.structure_label`)."""

Shape = tuple[float, ...]


def _free_parameters(ltype: str, a: float, b: float, c: float, alpha: float, beta: float, gamma: float) -> Shape:
    """The shape parameters free in PyXtal's ``ltype`` (axis ratios, angles in degrees)."""
    ratios = (round(b / a, 4), round(c / a, 4))
    free = {
        'cubic': (),
        'tetragonal': ratios[1:],
        'hexagonal': ratios[1:],
        'trigonal': ratios[1:],
        'orthorhombic': ratios,
        'monoclinic': (*ratios, round(beta, 3)),
        'triclinic': (*ratios, round(alpha, 3), round(beta, 3), round(gamma, 3)),
    }
    return free[ltype]


def _parameters(ltype: str, shape: Shape) -> tuple[float, float, float, float, float, float]:
    """``(1, b/a, c/a, α, β, γ)``: a cell of the shape with a = 1, the inverse of :func:`_free_parameters`."""
    if ltype == 'cubic':
        return 1.0, 1.0, 1.0, 90.0, 90.0, 90.0
    if ltype == 'tetragonal':
        return 1.0, 1.0, shape[0], 90.0, 90.0, 90.0
    if ltype in ('hexagonal', 'trigonal'):
        return 1.0, 1.0, shape[0], 90.0, 90.0, 120.0
    if ltype == 'orthorhombic':
        return 1.0, shape[0], shape[1], 90.0, 90.0, 90.0
    if ltype == 'monoclinic':
        return 1.0, shape[0], shape[1], 90.0, shape[2], 90.0
    return 1.0, *shape  # type: ignore[return-value]


def lattice_shape(template: Template) -> tuple[int, Shape] | None:
    """A crystal's space group and the shape of its standard conventional cell (spglib's, at the labels' tolerance);
    ``None`` where spglib finds another group than the crystal's label has."""
    import numpy as np
    import spglib
    from pymatgen.core import Element

    numbers = [Element(symbol).Z for symbol in template.species]
    dataset = spglib.get_symmetry_dataset((np.array(template.lattice), np.array(template.coords), numbers),
                                          symprec=SYMPREC)
    spacegroup = int(template.label.split('_')[2])
    if dataset is None or dataset.number != spacegroup:
        return None
    lengths = np.linalg.norm(dataset.std_lattice, axis=1)
    a, b, c = (float(x) for x in lengths)
    vectors = dataset.std_lattice
    alpha, beta, gamma = (math.degrees(math.acos(float(np.dot(vectors[i], vectors[j]) / (lengths[i] * lengths[j]))))
                          for i, j in ((1, 2), (0, 2), (0, 1)))
    return spacegroup, _free_parameters(spacegroup_info(spacegroup).crystal_system, a, b, c, alpha, beta, gamma)


class LatticeShapes:
    """The lattice shapes of training crystals by space group (``data_sha256``: of the data the templates came
    from)."""

    def __init__(self, by_spacegroup: dict[int, list[Shape]], data_sha256: str | None = None) -> None:
        self.by_spacegroup = by_spacegroup
        self.data_sha256 = data_sha256

    def shapes_for(self, spacegroup: int) -> list[Shape]:
        """The group's shapes, or those of every group of its lattice type where it has fewer than
        :data:`MIN_GROUP_SHAPES` (none only where no training crystal has that lattice type)."""
        own = self.by_spacegroup.get(spacegroup, [])
        if len(own) >= MIN_GROUP_SHAPES:
            return own
        ltype = spacegroup_info(spacegroup).crystal_system
        return [shape for group, shapes in sorted(self.by_spacegroup.items())
                if spacegroup_info(group).crystal_system == ltype for shape in shapes]

    def write(self, path: Path) -> None:
        """Gzipped JSON with no time or name in the gzip header, so a rebuild of the same data gives the same bytes."""
        document = {'data_sha256': self.data_sha256,
                    'spacegroups': {str(group): shapes for group, shapes in sorted(self.by_spacegroup.items())}}
        with open(path, 'wb') as raw, gzip.GzipFile(fileobj=raw, mode='wb', mtime=0, filename='') as stream:
            stream.write(json.dumps(document, separators=(',', ':')).encode())

    @classmethod
    def read(cls, path: Path | Any) -> LatticeShapes:
        with gzip.open(path, 'rt') as stream:
            document = json.load(stream)
        return cls({int(group): [tuple(shape) for shape in shapes] for group, shapes in document['spacegroups'].items()},
                   document.get('data_sha256'))


def build_lattice_shapes(library: TemplateLibrary, output: Path) -> LatticeShapes:
    """Write the lattice shapes of a template library's crystals (those whose space group spglib confirms)."""
    by_spacegroup: dict[int, list[Shape]] = defaultdict(list)
    for prototype in sorted(library.by_prototype):
        for template in library.by_prototype[prototype]:
            found = lattice_shape(template)
            if found is not None:
                by_spacegroup[found[0]].append(found[1])
    shapes = LatticeShapes(dict(by_spacegroup), library.data_sha256)
    shapes.write(output)
    return shapes


@functools.cache
def shipped_lattice_shapes() -> LatticeShapes:
    """The shapes shipped in the package: those of the shipped template library's training crystals."""
    from importlib import resources

    with resources.as_file(resources.files('aiida_wyckoffdiff').joinpath('resources', LATTICE_SHAPES_FILE)) as path:
        return LatticeShapes.read(path)


def draw_lattice(spacegroup: int, volume: float, rng: np.random.Generator,
                 shapes: LatticeShapes | None = None) -> Lattice:
    """A PyXtal lattice of ``volume`` (Å^3, conventional cell) with the shape of a random training crystal of the
    group (:meth:`LatticeShapes.shapes_for`); PyXtal keeps it fixed while placing atoms (``random=False``)."""
    from pyxtal.lattice import Lattice

    ltype = spacegroup_info(spacegroup).crystal_system
    candidates = (shapes or shipped_lattice_shapes()).shapes_for(spacegroup)
    if not candidates:
        raise ProtostructureError(f'no training crystal has a {ltype} lattice to take the shape of space group '
                                  f'{spacegroup} from')
    _, b, c, alpha, beta, gamma = _parameters(ltype, candidates[int(rng.integers(len(candidates)))])
    cosines = [math.cos(math.radians(angle)) for angle in (alpha, beta, gamma)]
    unit_volume = b * c * math.sqrt(1 - sum(x * x for x in cosines) + 2 * math.prod(cosines))
    a = (volume / unit_volume) ** (1 / 3)
    return Lattice.from_para(a, a * b, a * c, alpha, beta, gamma, ltype=ltype, random_state=rng)
