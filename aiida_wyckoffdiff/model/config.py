"""Frozen configurations of the WyckoffDiff-Adaptor model, its training and its sampling, and the named presets.

Configurations travel inside checkpoints as plain dictionaries (:func:`dataclasses.asdict`) next to
:data:`SCHEMA_VERSION`, so a checkpoint says exactly which network it holds and how it was trained.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace
from typing import Any

from ..exceptions import ConfigurationError

__all__ = [
    'GUIDABLE_CONDITIONS',
    'PRESETS',
    'SCHEMA_VERSION',
    'ModelConfig',
    'Preset',
    'SamplingConfig',
    'TrainingConfig',
    'Transition',
    'get_preset',
    'periodic_elements',
]

GUIDABLE_CONDITIONS = ('chemsys', 'spacegroup', 'e_above_hull')
"""Names of the adapter conditions, in the column order of ``adapters.Condition``."""

SCHEDULES = ('constant', 'cosine')
"""Learning-rate schedules of :class:`TrainingConfig`."""

SCHEMA_VERSION = 1
"""Bumped whenever the meaning of a stored configuration or state dict changes."""


class Transition(str, enum.Enum):
    """Stationary distribution ``m`` of the D3PM transition ``Q_t = (1 - b_t) I + b_t 1 m^T``."""

    UNIFORM = 'uniform'
    MARGINAL = 'marginal'
    """``m`` is the class frequency in the training data (the D3PM/WyckoffDiff choice)."""
    ABSORBING = 'absorbing'
    """All mass on class 0: an empty fixed position or a count of zero."""


def periodic_elements(number: int) -> tuple[str, ...]:
    """The first ``number`` elements of the periodic table, H first."""
    from pymatgen.core.periodic_table import Element

    return tuple(Element.from_Z(z).symbol for z in range(1, number + 1))


@dataclass(frozen=True)
class ModelConfig:
    """Sizes of the denoiser and of the diffusion process.

    An empty ``elements`` means "the elements of the training data, by atomic number"; training
    resolves it before the first step and the checkpoint stores the resolved tuple.
    """

    elements: tuple[str, ...] = ()
    max_count: int = 15
    """Largest number of orbits of one element on one free Wyckoff position: counts take 0..max_count."""
    num_layers: int = 3
    hidden_dim: int = 128
    condition_dim: int = 16
    """Size of the per-node embedding of dof, position, multiplicity, space group and time."""
    adapter_dim: int = 64
    num_timesteps: int = 1000
    transition: Transition = Transition.MARGINAL

    def __post_init__(self) -> None:
        object.__setattr__(self, 'elements', tuple(self.elements))
        object.__setattr__(self, 'transition', Transition(self.transition))
        for name in ('max_count', 'num_layers', 'hidden_dim', 'condition_dim', 'adapter_dim', 'num_timesteps'):
            if int(getattr(self, name)) < 1:
                raise ConfigurationError(
                    f'model setting {name} must be a positive whole number, not {getattr(self, name)!r}'
                )
        if len(set(self.elements)) != len(self.elements):
            raise ConfigurationError(f'the element vocabulary lists an element twice: {self.elements}')


@dataclass(frozen=True)
class TrainingConfig:
    """Optimisation of the base model and of the adapter fine-tuning."""

    learning_rate: float = 1e-4
    finetune_learning_rate: float = 2e-4
    batch_size: int = 32
    epochs: int = 900
    finetune_epochs: int = 200
    guidance_dropout: float = 0.2
    """Probability of dropping all conditions of a crystal together (classifier-free guidance)."""
    condition_dropout: float = 0.1
    """Probability of dropping each condition on its own, so that any subset can be requested."""
    gradient_clip: float = 1.0
    seed: int = 0
    augment_settings: bool = False
    """Write each training crystal, every epoch, in one of its group's equivalent Wyckoff settings (origin shifts and
    axis permutations, ``symmetry.equivalent_settings``) drawn at random, instead of the canonical one alone: the same
    crystals, 3.6 settings each on average, so the network sees that a position's letter is a convention."""
    schedule: str = 'constant'
    """Learning rate over a stage's epochs: ``constant``, or ``cosine`` from the stage's rate at epoch 0 down to 0 at
    its last epoch (set per epoch, so a resumed run follows the same curve; asking for more epochs stretches it)."""
    ema_decay: float = 0.0
    """Decay of an exponential moving average of the weights, updated after every step; the checkpoint's model holds
    the average (what sampling uses), the weights being trained travel beside it for resuming. 0 turns it off."""

    def __post_init__(self) -> None:
        if self.schedule not in SCHEDULES:
            raise ConfigurationError(f'unknown learning-rate schedule {self.schedule!r}: choose one of {", ".join(SCHEDULES)}')
        if not 0.0 <= float(self.ema_decay) < 1.0:
            raise ConfigurationError(f'the EMA decay must be in [0, 1), not {self.ema_decay!r}')


@dataclass(frozen=True)
class SamplingConfig:
    """Reverse diffusion settings and the resampling bound of the hard constraints."""

    num_steps: int = 100
    """Strided reverse steps out of T; T itself gives the full chain."""
    guidance_scale: float = 2.0
    """``g`` in ``(1 - g) * reference + g * cond``: 1 is plain conditioning, 0 is the reference pass alone."""
    guided: tuple[str, ...] = ('e_above_hull',)
    """Conditions the guidance contrasts: the reference pass drops these and keeps the others, so ``g`` scales only
    their effect. All three is textbook classifier-free guidance, whose reference is the base model: it knows
    nothing of the chemical system, so ``g = 2`` over it inflated cells to twice the data's size (docs/discovery.md)."""
    max_atoms: int = 60
    """Upper bound on atoms in the conventional cell."""
    max_draws: int = 50
    """Reverse chains per requested sample at most, redraws included: the budget of a rare request (Al-Mg-O in
    Fd-3m accepted about one chain in 14 before elements were required in the chain, docs/spacegroups.md)."""
    batch_size: int = 256
    """Reverse chains run together."""
    require_elements_from: float = 0.5
    """Share of the reverse chain after which a requested element the predicted structure lacks is required at the
    position likeliest to hold it (``sampling._require_missing``); 1 never requires one, so a sample missing an element
    is only redrawn."""
    known_prototypes: float = 0.875
    """Share of each space group's samples chosen, without a chain, among the training crystals' arrangements of
    Wyckoff orbits (prototypes, the label before ``:``) with the request's elements, distinct, in proportion to the
    model's likelihood of each (``sampling.library_scores``); chains draw the rest, new arrangements among them. Real
    crystals reuse a training prototype 79-88 % of the time, the network's chains 12-20 % (docs/discovery.md; 0.75
    until 7 December 2026)."""
    temperature: float = 0.5
    """Divides the denoiser's logits before each reverse step (and in the library's scores): below 1 the chain keeps
    to what the model finds likely (the arrangements of real crystals), above 1 it explores (docs/discovery.md
    measures the trade; 1 until 7 December 2026)."""
    plausible: bool = True
    """Keep to compositions that common oxidation states balance (oxide oxygen; peroxide and superoxide only with alkali
    and alkaline-earth cations: ``metrics.composition_plausible``) in systems where charge balance applies
    (``metrics.ionic_system``: with a chalcogen, halogen, N or P): library candidates that break it are never scored,
    chains that break it end in their likeliest balanced last step (``constrained_last_step``) or are redrawn.
    Alloys and carbides are never filtered. On by default since 6 December 2026, chosen by outcome (docs/discovery.md):
    without it 8-10 % of a Li-O or Al-Mg-O scan's compositions balanced, against 77-90 % of real crystals."""

    known_prototypes_across_groups: bool = True
    """Where a space group has fewer known arrangements than its share of samples (``known_prototypes``), choose what
    it lacks among the other requested groups' arrangements (those samples then have that group) instead of drawing
    chains in it: with the composition filter, Li-O's 20 groups fill 70 of the 120 library samples of a 160-sample
    scan, so half its samples were chains, which rarely look like crystals (docs/discovery.md; off until 7 December
    2026)."""

    constrained_last_step: bool = True
    """A chain whose draw breaks a condition on its composition (every requested element present, the atom limit, the
    composition filter) takes the likeliest draw of its last step that obeys (``model/constrained.py``) instead of
    being drawn again: 16 of 16 from 13 chains and the library, where 195 chains were run before (docs/discovery.md,
    6 December 2026)."""

    plausible_library: bool = False
    """Apply the composition filter to the library share alone (``known_prototypes``), where it costs no redraw: only
    charge-balanced arrangements are candidates in ionic systems, the chains are left unfiltered."""

    energy_guidance: float = 0.0
    """Weight of the checkpoint's energy head (``model/energy.py``, fitted when it was fine-tuned on relaxations) in
    the library candidates' scores: each gains this times the head's Gaussian log-likelihood that it relaxes to the
    requested e_above_hull. 0, no e_above_hull requested, or a checkpoint without a head: the model's likelihood alone.
    Off by default: at 8 and 32 it moved the relaxed energies no further than the fine-tuned adapter alone
    (docs/rounds.md, 6 December 2026)."""

    energy_screen: int = 1
    """Draw this many times the requested samples and keep those the checkpoint's energy head predicts closest to
    the requested e_above_hull: a learned screen before realization and relaxation, where
    ``energy_guidance`` only reorders one group's library candidates. 1, no e_above_hull requested, or a checkpoint
    without a head: no screen. Within a group the head barely ranks, across groups and compositions it does
    (Spearman 0.33-0.49 on the next round's new protostructures, docs/rounds.md)."""

    def __post_init__(self) -> None:
        if int(self.num_steps) < 1:
            raise ConfigurationError(f'the number of reverse steps must be at least 1, not {self.num_steps!r}')
        if int(self.max_atoms) < 1:
            raise ConfigurationError(f'the atom limit must be at least 1, not {self.max_atoms!r}')
        if int(self.max_draws) < 1:
            raise ConfigurationError(f'the resampling bound must be at least 1, not {self.max_draws!r}')
        if not 0.0 <= float(self.require_elements_from) <= 1.0:
            raise ConfigurationError(f'require_elements_from is a share of the chain, from 0 to 1, not {self.require_elements_from!r}')
        if not 0.0 <= float(self.known_prototypes) <= 1.0:
            raise ConfigurationError(f'known_prototypes is a share of the samples, from 0 to 1, not {self.known_prototypes!r}')
        if not float(self.temperature) > 0:
            raise ConfigurationError(f'the sampling temperature must be positive, not {self.temperature!r}')
        if not float(self.energy_guidance) >= 0:
            raise ConfigurationError(f'energy_guidance is a weight, 0 or more, not {self.energy_guidance!r}')
        if isinstance(self.energy_screen, bool) or int(self.energy_screen) != self.energy_screen \
                or self.energy_screen < 1:
            raise ConfigurationError(f'energy_screen is a whole factor of samples, 1 or more, not {self.energy_screen!r}')
        if int(self.batch_size) < 1:
            raise ConfigurationError(f'the sampling batch size must be at least 1, not {self.batch_size!r}')
        object.__setattr__(self, 'guided', tuple(self.guided))
        if unknown := [name for name in self.guided if name not in GUIDABLE_CONDITIONS]:
            raise ConfigurationError(
                f'cannot guide on {", ".join(map(repr, unknown))}: choose among {", ".join(GUIDABLE_CONDITIONS)}'
            )


@dataclass(frozen=True)
class Preset:
    """A named pair of model and training configurations."""

    name: str
    description: str
    model: ModelConfig = field(default_factory=ModelConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)

    def with_overrides(self, **training_overrides: Any) -> Preset:
        """This preset with some training settings replaced (``None`` values are ignored)."""
        overrides = {key: value for key, value in training_overrides.items() if value is not None}
        return replace(self, training=replace(self.training, **overrides))


def _paper() -> Preset:
    return Preset(
        name='paper',
        description='Ishii et al. (2025): T=1000, 100 elements, counts up to 54, 3 layers of 256, lr 1e-4 / 2e-4, 900 / 200 epochs.',
        model=ModelConfig(
            elements=periodic_elements(100),
            max_count=54,
            num_layers=3,
            hidden_dim=256,
            condition_dim=16,
            adapter_dim=64,
        ),
        training=TrainingConfig(
            learning_rate=1e-4, finetune_learning_rate=2e-4, batch_size=32, epochs=900, finetune_epochs=200
        ),
    )


def _cpu() -> Preset:
    # Larger batches and learning rate than the paper: on CPU cores the number of optimiser steps, not the batch
    # size, limits what two hours can learn. One epoch over the 24k training crystals took about 37 s on one
    # shared core (base) and 45 s (fine-tuning), so 120 + 40 epochs fit in about two hours. Counts above 15
    # orbits of one element on one position are rare (RESEARCH.md section 1); such crystals are left out.
    return Preset(
        name='cpu',
        description='About two hours on 2 CPU cores: the elements of the data, counts up to 15, 3 layers of 128, batch 64.',
        model=ModelConfig(elements=(), max_count=15, num_layers=3, hidden_dim=128, condition_dim=16, adapter_dim=64),
        training=TrainingConfig(
            learning_rate=1e-3, finetune_learning_rate=5e-4, batch_size=64, epochs=120, finetune_epochs=40
        ),
    )


PRESETS: dict[str, Preset] = {preset.name: preset for preset in (_paper(), _cpu())}


def get_preset(name: str) -> Preset:
    """The preset called ``name``; raises :class:`ConfigurationError` listing the known ones."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigurationError(f'unknown preset {name!r}: choose one of {", ".join(sorted(PRESETS))}') from None
