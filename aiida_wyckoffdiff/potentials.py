"""Machine-learned interatomic potentials behind one batched interface.

Each potential is loaded once and then evaluates many structures per call, so a relaxation of hundreds of
structures pays the model load once. Every energy carries the potential's name and the sha256 of the checkpoint
file it came from, so results from different weights are never mixed silently.
"""

from __future__ import annotations

import os
import socket
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .exceptions import RelaxerError
from .files import file_sha256

if TYPE_CHECKING:
    from ase import Atoms

__all__ = [
    'DEFAULT_RELAXER',
    'MATTERSIM_CHECKPOINT_ENV',
    'MATTERSIM_NAMED_CHECKPOINTS',
    'RELAXERS',
    'Evaluation',
    'LoadedPotential',
    'load_potential',
    'resolve_mattersim_checkpoint',
]

#: Potential used when none is named: its weights ship inside the ``chgnet`` wheel, so it works offline on a
#: fresh machine. MatterSim is the design's choice but needs a checkpoint file (see ``resolve_mattersim_checkpoint``).
DEFAULT_RELAXER = 'chgnet'
MATTERSIM_CHECKPOINT_ENV = 'WYCKOFFDIFF_MATTERSIM_CHECKPOINT'
MATTERSIM_NAMED_CHECKPOINTS = {'1m': 'mattersim-v1.0.0-1M.pth', '5m': 'mattersim-v1.0.0-5M.pth'}
_MATTERSIM_DOWNLOAD_HOST = ('raw.githubusercontent.com', 443)


@dataclass(frozen=True)
class Evaluation:
    """Energy (eV), forces (eV/Å, shape ``(n, 3)``) and stress (eV/Å³, shape ``(3, 3)``) of one structure."""

    energy: float
    forces: np.ndarray
    stress: np.ndarray


class LoadedPotential(ABC):
    """A potential loaded once; ``evaluate`` takes a batch of ASE ``Atoms``.

    :param name: registry name (``mattersim``, ``chgnet``, ``sevenn``).
    :param checkpoint: the weights file actually loaded.
    """

    #: How many structures one model call may take; the relaxer chunks larger batches.
    batch_size = 16
    #: How many atoms one model call may take: a model's memory grows with the atoms (and their neighbours) of a
    #: batch, not with its number of structures, so this bounds it.
    batch_atoms = 512
    #: Whether the model was trained on MP2020-corrected energies, so the corrections must not be added again.
    includes_mp2020 = False

    def __init__(self, name: str, checkpoint: Path) -> None:
        self.name = name
        self.checkpoint = checkpoint

    @cached_property
    def checkpoint_sha256(self) -> str:
        return file_sha256(self.checkpoint)

    @property
    @abstractmethod
    def supported_numbers(self) -> frozenset[int]:
        """Atomic numbers the potential was trained on; other elements are refused before any model call."""

    @abstractmethod
    def evaluate(self, atoms_list: Sequence[Atoms]) -> list[Evaluation]:
        """Energies, forces and stresses for a batch; raises if any structure of the batch cannot be evaluated."""

    def describe(self) -> dict[str, str]:
        return {'potential': self.name, 'checkpoint': self.checkpoint.name, 'checkpoint_sha256': self.checkpoint_sha256}


def resolve_mattersim_checkpoint(checkpoint: str | os.PathLike[str] | None = None) -> Path:
    """Find the MatterSim weights: an explicit path or name, ``$WYCKOFFDIFF_MATTERSIM_CHECKPOINT``, or ``1M``.

    The names ``1M`` and ``5M`` refer to MatterSim's own cache ``~/.local/mattersim/pretrained_models``. A cached
    file that is absent is downloaded by MatterSim only when its server answers within seconds; otherwise the error
    says which file to place where, instead of letting the download hang.

    :param checkpoint: path to a ``.pth`` file, or ``1M``/``5M`` (also the full file names).
    """
    value = str(checkpoint or os.environ.get(MATTERSIM_CHECKPOINT_ENV) or '1M')
    key = value.lower().removeprefix('mattersim-v1.0.0-').removesuffix('.pth')
    if key not in MATTERSIM_NAMED_CHECKPOINTS:
        path = Path(value).expanduser()
        if not path.is_file():
            raise RelaxerError(f'MatterSim checkpoint `{path}` does not exist: pass an existing .pth file or 1M/5M.')
        return path
    filename = MATTERSIM_NAMED_CHECKPOINTS[key]
    cache = Path('~/.local/mattersim/pretrained_models').expanduser()
    path = cache / filename
    if path.is_file():
        return path
    if not _reachable(*_MATTERSIM_DOWNLOAD_HOST):
        raise RelaxerError(
            f'MatterSim checkpoint {filename} is not in {cache} and its download server is unreachable: copy the file '
            f'there, or pass its path with --checkpoint or ${MATTERSIM_CHECKPOINT_ENV}.'
        )
    from mattersim.utils.download_utils import download_checkpoint

    try:
        download_checkpoint(filename, save_folder=str(cache))
    except Exception as exception:  # noqa: BLE001 - the download raises whatever requests raises
        raise RelaxerError(f'Downloading MatterSim checkpoint {filename} into {cache} failed: {exception}') from None
    return path


def _reachable(host: str, port: int, timeout: float = 3.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


class MatterSimPotential(LoadedPotential):
    """MatterSim (M3GNet architecture); batches go through its own graph data loader in one forward pass."""

    batch_size = 32

    def __init__(self, checkpoint: str | os.PathLike[str] | None = None, device: str = 'cpu') -> None:
        path = resolve_mattersim_checkpoint(checkpoint)
        super().__init__('mattersim', path)
        from mattersim.forcefield.potential import Potential

        try:
            self.model = Potential.from_checkpoint(load_path=str(path), device=device, load_training_state=False)
        except Exception as exception:  # noqa: BLE001 - torch.load and the state dict raise many types
            raise RelaxerError(f'MatterSim checkpoint `{path}` cannot be loaded ({exception}); is it a MatterSim .pth?')
        args = self.model.model.model_args
        self._cutoffs = {'cutoff': args['cutoff'], 'threebody_cutoff': args['threebody_cutoff']}
        self._max_z = int(args.get('max_z', 94))

    @property
    def supported_numbers(self) -> frozenset[int]:
        return frozenset(range(1, self._max_z + 1))

    def evaluate(self, atoms_list: Sequence[Atoms]) -> list[Evaluation]:
        from ase.units import GPa
        from mattersim.datasets.utils.build import build_dataloader

        loader = build_dataloader(
            list(atoms_list), batch_size=len(atoms_list), only_inference=True, model_type='m3gnet', **self._cutoffs
        )
        energies, forces, stresses = self.model.predict_properties(loader, include_forces=True, include_stresses=True)
        return [Evaluation(float(e), np.asarray(f), np.asarray(s) * GPa) for e, f, s in zip(energies, forces, stresses)]


class CHGNetPotential(LoadedPotential):
    """CHGNet 0.3.0, whose weights ship in the wheel; batches go through its own graphs and layers.

    It was trained on MP2020-corrected energies: its Li2O and rutile formation energies match MP within 0.04 eV/atom
    as they are, and are 0.2-0.5 eV/atom too low with the oxide correction added again (measured, docs/hull.md).

    Forces and stress come from one backward pass without a graph of the gradients: CHGNet's ``predict_structure``
    takes two passes and keeps the graph for training, which made a model call 1.4-1.7x slower on CPU for the same
    numbers (docs/relaxation.md, "Model calls").
    """

    includes_mp2020 = True

    def __init__(self, checkpoint: str | os.PathLike[str] | None = None, device: str = 'cpu') -> None:
        from chgnet.model import CHGNet
        from chgnet.model import model as chgnet_model

        if checkpoint is None:
            path = Path(chgnet_model.module_dir, '../pretrained/0.3.0/chgnet_0.3.0_e29f68s314m37.pth.tar').resolve()
        else:
            path = Path(checkpoint).expanduser()
        super().__init__('chgnet', path)
        try:
            self.model = CHGNet.from_file(str(path)).to(device)
        except Exception as exception:  # noqa: BLE001 - torch.load and the state dict raise many types
            raise RelaxerError(f'CHGNet checkpoint `{path}` cannot be loaded ({exception}); is it a CHGNet .pth.tar?')
        self.model.eval()
        self.model.requires_grad_(False)  # inference only: gradients are taken of the geometry, not the weights

    @property
    def supported_numbers(self) -> frozenset[int]:
        return frozenset(range(1, self.model.atom_embedding.embedding.num_embeddings + 1))

    def evaluate(self, atoms_list: Sequence[Atoms]) -> list[Evaluation]:
        import torch
        from chgnet.model.model import BatchedGraph
        from pymatgen.io.ase import AseAtomsAdaptor

        model = self.model
        device = next(model.parameters()).device
        graphs = [model.graph_converter(AseAtomsAdaptor.get_structure(atoms)).to(device) for atoms in atoms_list]
        batch = BatchedGraph.from_graphs(
            graphs,
            bond_basis_expansion=model.bond_basis_expansion,
            angle_basis_expansion=model.angle_basis_expansion,
            compute_stress=True,
        )
        prediction = model._compute(batch)  # energy per atom, without CHGNet's own force and stress passes
        if model.composition_model is not None:
            prediction['e'] = prediction['e'] + model.composition_model(graphs)
        energies = prediction['e'] * prediction['atoms_per_graph']
        gradients = torch.autograd.grad(energies.sum(), [*batch.atom_positions, *batch.strains])
        count = len(graphs)
        return [
            Evaluation(
                float(energy),
                -position_gradient.cpu().numpy(),
                (strain_gradient / volume).cpu().numpy(),
            )
            for energy, position_gradient, strain_gradient, volume in zip(
                energies.detach(), gradients[:count], gradients[count:], batch.volumes, strict=True
            )
        ]


class SevenNetPotential(LoadedPotential):
    """SevenNet-0 through its ASE calculator; it has no batched inference, so structures run one by one."""

    def __init__(self, checkpoint: str | os.PathLike[str] | None = None, device: str = 'cpu') -> None:
        from sevenn.calculator import SevenNetCalculator
        from sevenn.util import pretrained_name_to_path

        path = Path(checkpoint).expanduser() if checkpoint else Path(pretrained_name_to_path('7net-0'))
        super().__init__('sevenn', path)
        try:
            self.calculator = SevenNetCalculator(model=str(path), device=device)
        except Exception as exception:  # noqa: BLE001 - torch.load and the state dict raise many types
            raise RelaxerError(f'SevenNet checkpoint `{path}` cannot be loaded ({exception}); is it a SevenNet .pth?')

    @property
    def supported_numbers(self) -> frozenset[int]:
        return frozenset(int(number) for number in self.calculator.type_map)

    def evaluate(self, atoms_list: Sequence[Atoms]) -> list[Evaluation]:
        from ase.stress import voigt_6_to_full_3x3_stress

        evaluations = []
        for atoms in atoms_list:
            atoms = atoms.copy()
            atoms.calc = self.calculator
            stress = voigt_6_to_full_3x3_stress(atoms.get_stress())
            evaluations.append(Evaluation(atoms.get_potential_energy(), atoms.get_forces(), stress))
        return evaluations


#: The relaxers by name; an explicit mapping, so a typo is a clear error and nothing is imported by string.
RELAXERS: dict[str, Callable[..., LoadedPotential]] = {
    'mattersim': MatterSimPotential,
    'chgnet': CHGNetPotential,
    'sevenn': SevenNetPotential,
}


def load_potential(
    name: str = DEFAULT_RELAXER, checkpoint: str | os.PathLike[str] | None = None, **kwargs: Any
) -> LoadedPotential:
    """Load a potential once for many evaluations.

    :param name: one of ``RELAXERS``.
    :param checkpoint: weights file; each potential has a default (MatterSim: see ``resolve_mattersim_checkpoint``).
    :param kwargs: passed to the potential, e.g. ``device``.
    """
    if name not in RELAXERS:
        raise RelaxerError(f'Unknown relaxer `{name}`: choose one of {", ".join(RELAXERS)}.')
    return RELAXERS[name](checkpoint, **kwargs)
