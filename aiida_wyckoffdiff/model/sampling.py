"""Conditional sampling: the strided reverse chain with classifier-free guidance and exact hard constraints.

Hard constraints cost nothing and never fail: the space group is an input of every graph, and classes that
would break the request (an element outside the chemical system, an orbit whose multiplicity alone exceeds
the atom limit) get zero probability in the prior, in the predicted x0 and in every reverse step. What
masking alone cannot guarantee (the total atom count, every requested element present, the composition filter) is
checked on the chain's draw. From ``require_elements_from`` of the chain on, a requested element the predicted
structure lacks is required where it is likeliest (a mask that changes during the chain), so few chains end without
one; a chain whose draw still breaks a condition takes the likeliest last step that obeys them all
(:mod:`.constrained`), so it need not be drawn again. What even that cannot mend (three elements in four atoms) is
drawn again: each round runs, for every space group of a request still short of samples, as many chains as its
acceptance so far says will fill the gap, up to a budget of ``max_draws`` chains per requested sample, so a rare
combination is filled in a few rounds instead of being given up after a fixed number of tries (docs/spacegroups.md).

Where a share of known arrangements is asked for (``known_prototypes``), that share of each group's samples is not
drawn at all but chosen: the request's elements on each prototype of the group's training crystals are scored by the
model's denoising likelihood and drawn without replacement in proportion to it, so the model ranks what real crystals
do instead of hoping a chain lands on it (docs/discovery.md).
"""

from __future__ import annotations

import itertools
import math
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..exceptions import ConditionError, ConfigurationError
from ..symmetry import Protostructure, check_spacegroup
from .adapters import Condition, Conditions
from .config import SamplingConfig
from .constrained import constrained_argmax
from .diffusion import WyckoffDiffusion, gumbel_scores, sample_categorical, x0_nll
from .encoding import EncodedCrystal, ProtoBatch, collate, decode, encode, structure_tensors
from .energy import pooled_features

__all__ = [
    'GeneratedSample',
    'GenerationRequest',
    'GenerationResult',
    'generate',
    'generate_json',
    'generate_many',
    'reverse_steps',
]

MAX_SAMPLES = 100_000
EXCLUDED = 'excluded'
"""Why a chain's draw was not returned: the request excludes its label (``GenerationRequest.exclude``)."""
EXCLUDED_DRAWS = 5
"""Excluded draws per sample after which a space group's missing samples go to the group of the same request that
fills best (``_hand_over``): a group whose chains keep returning what earlier rounds relaxed has little new to give,
and spending its whole ``max_draws`` budget there cost a second round 10-32 % of its core-minutes (docs/rounds.md)."""
MAX_E_ABOVE_HULL = 10.0
"""eV/atom; the training data reach 5.2, so anything larger is a typo, not a request."""


@dataclass(frozen=True)
class GenerationRequest:
    """What to generate: every element of ``chemsys`` must appear, and nothing else may."""

    chemsys: tuple[str, ...]
    spacegroups: tuple[int, ...] = ()
    """Cycled over the samples; empty draws each sample's group from the training distribution."""
    e_above_hull: float | None = None
    """eV/atom; ``None`` leaves the energy unconditioned."""
    num_samples: int = 16
    exclude: frozenset[str] = frozenset()
    """Protostructure labels not to return (those earlier rounds relaxed): the library skips them, and a chain that
    draws one is drawn again, so every sample is new."""

    def __post_init__(self) -> None:
        from pymatgen.core.periodic_table import Element

        unknown = [
            element for element in self.chemsys if not isinstance(element, str) or not Element.is_valid_symbol(element)
        ]
        if unknown:
            raise ConditionError(f'{", ".join(map(repr, unknown))} is not an element symbol: write e.g. "Li-O"')
        elements = tuple(sorted(set(self.chemsys)))
        if not elements:
            raise ConditionError('the chemical system is empty: give elements such as "Li-O"')
        object.__setattr__(self, 'chemsys', elements)
        object.__setattr__(self, 'spacegroups', tuple(check_spacegroup(s) for s in self.spacegroups))
        object.__setattr__(self, 'exclude', frozenset(self.exclude))
        if (
            isinstance(self.num_samples, bool)
            or int(self.num_samples) != self.num_samples
            or not 1 <= self.num_samples <= MAX_SAMPLES
        ):
            raise ConditionError(
                f'the number of samples must be a whole number from 1 to {MAX_SAMPLES}, not {self.num_samples!r}'
            )
        energy = self.e_above_hull
        if energy is not None and not (math.isfinite(energy) and 0.0 <= energy <= MAX_E_ABOVE_HULL):
            raise ConditionError(f'e_above_hull must be between 0 and {MAX_E_ABOVE_HULL} eV/atom, not {energy!r}')


@dataclass(frozen=True)
class GeneratedSample:
    protostructure: Protostructure
    draws: int
    """Rounds of drawing it took (1: accepted from the first chain run for it; 0: chosen from the library)."""
    repaired: bool = False
    """Whether its chain broke a condition on the composition and its last step was drawn under it instead
    (``SamplingConfig.constrained_last_step``)."""

    @property
    def origin(self) -> str:
        """``library``: a training arrangement chosen by the model's score (``known_prototypes``); ``chain``: a
        reverse chain's draw."""
        return 'library' if self.draws == 0 else 'chain'


@dataclass
class GenerationResult:
    samples: list[GeneratedSample]
    num_drawn: int
    """Reverse chains run in total."""
    num_failed: int
    """Requested samples still missing when the budget of ``max_draws`` chains per sample was spent."""
    rejected: dict[str, int] = field(default_factory=dict)
    """Chains not returned, by reason (``surplus``: valid, but its group's samples were already complete)."""
    seconds: float = 0.0


def reverse_steps(num_timesteps: int, num_steps: int) -> list[int]:
    """Descending times ``T = t_0 > ... > t_n = 0`` of a strided chain with ``num_steps`` jumps."""
    if num_steps > num_timesteps:
        raise ConfigurationError(f'{num_steps} reverse steps requested, but the model has only T = {num_timesteps}')
    return sorted({round(t) for t in np.linspace(num_timesteps, 0, num_steps + 1)}, reverse=True)


def _allowed_classes(
    batch: ProtoBatch, chemsys: torch.Tensor, num_counts: int, max_atoms: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Boolean masks ``(B, N, V + 1)`` and ``(B, N, V, K + 1)`` of the classes each variable may take.

    Class 0 (empty, no orbit) is always allowed; variables that do not exist (padding, the class of a
    free position, the counts of a fixed one) may only be 0.
    """
    device = chemsys.device
    in_system = chemsys.bool()[:, None, :]  # (B, 1, V)
    multiplicity = batch.multiplicity[..., None]  # (B, N, 1)
    element_fits = in_system & (multiplicity <= max_atoms) & batch.fixed[..., None]  # (B, N, V)
    allowed_fixed = torch.cat([torch.ones_like(element_fits[..., :1]), element_fits], dim=-1)
    counts = torch.arange(num_counts, device=device)  # (K + 1,)
    fits = counts * multiplicity[..., None] <= max_atoms  # (B, N, 1, K + 1)
    allowed_count = (counts == 0) | (in_system[..., None] & fits & batch.free[..., None, None])
    return allowed_fixed, allowed_count


def _reference_keep(guided: Sequence[str], device: torch.device) -> torch.Tensor:
    """(3,) mask columns the reference pass keeps: 1 for the conditions that guidance leaves alone."""
    return torch.tensor([float(condition.name.lower() not in guided) for condition in Condition], device=device)


def _guided_logits(
    model: WyckoffDiffusion, batch: ProtoBatch, t: torch.Tensor, conditions: Conditions, config: SamplingConfig
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(1 - g) * reference + g * cond`` for both logit tensors; one network pass where the two passes coincide.

    The reference pass is the model with the guided conditions dropped; where none of them is given, or ``g`` is
    0 or 1, only one pass is needed.
    """
    guidance = config.guidance_scale
    if not model.has_adapters:
        return model.denoiser(batch, t, None)
    reference = conditions.masked(_reference_keep(config.guided, conditions.mask.device))
    if guidance == 0:
        return model.denoiser(batch, t, reference)
    conditional = model.denoiser(batch, t, conditions)
    if guidance == 1 or torch.equal(reference.mask, conditions.mask):
        return conditional
    unguided = model.denoiser(batch, t, reference)
    return tuple((1 - guidance) * u + guidance * c for u, c in zip(unguided, conditional, strict=True))  # type: ignore[return-value]


@torch.no_grad()
def _reverse_chain(
    model: WyckoffDiffusion,
    batch: ProtoBatch,
    conditions: Conditions,
    config: SamplingConfig,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The last step's Gumbel-perturbed log-probabilities of every graph in ``batch``, (B, N, V + 1) and
    (B, N, V, K + 1): their argmax is the chain's draw of ``x_fixed`` and ``x_count``, and
    :func:`~.constrained.constrained_argmax` of them its likeliest draw under conditions on the composition."""
    fixed_diffusion, count_diffusion = model.fixed_diffusion, model.count_diffusion
    allowed_fixed, allowed_count = _allowed_classes(
        batch, conditions.chemsys, count_diffusion.num_classes, config.max_atoms
    )
    x_fixed = sample_categorical(fixed_diffusion.stationary * allowed_fixed, generator)
    x_count = sample_categorical(count_diffusion.stationary * allowed_count, generator)
    size = batch.spacegroup.shape[0]
    steps = reverse_steps(model.config.num_timesteps, config.num_steps)
    require_from = round(config.require_elements_from * (len(steps) - 1))
    for step, (t, s) in enumerate(itertools.pairwise(steps)):
        times = torch.full((size,), t, dtype=torch.long, device=batch.mask.device)
        noisy = batch.replace_variables(x_fixed, x_count)
        logits_fixed, logits_count = (
            logits / config.temperature for logits in _guided_logits(model, noisy, times, conditions, config)
        )
        p0_fixed = torch.softmax(logits_fixed.masked_fill(~allowed_fixed, float('-inf')), dim=-1)
        p0_count = torch.softmax(logits_count.masked_fill(~allowed_count, float('-inf')), dim=-1)
        if step >= require_from and _require_missing(p0_fixed, p0_count, conditions.chemsys, allowed_fixed, allowed_count):
            p0_fixed = torch.softmax(logits_fixed.masked_fill(~allowed_fixed, float('-inf')), dim=-1)
            p0_count = torch.softmax(logits_count.masked_fill(~allowed_count, float('-inf')), dim=-1)
        scores_fixed = gumbel_scores(fixed_diffusion.posterior(p0_fixed, x_fixed, t, s) * allowed_fixed, generator)
        scores_count = gumbel_scores(count_diffusion.posterior(p0_count, x_count, t, s) * allowed_count, generator)
        x_fixed, x_count = scores_fixed.argmax(dim=-1), scores_count.argmax(dim=-1)
    return scores_fixed, scores_count


def _require_missing(
    p0_fixed: torch.Tensor,
    p0_count: torch.Tensor,
    chemsys: torch.Tensor,
    allowed_fixed: torch.Tensor,
    allowed_count: torch.Tensor,
) -> bool:
    """Where the predicted structure lacks a requested element, require the variable likeliest to hold it to hold it
    from now on: a fixed position to be that element, or a free position's count of it to be at least one (the masks
    ``(B, N, V + 1)`` and ``(B, N, V, K + 1)`` change in place). True where a mask changed.

    Every element then has a place before the chain ends, and the rest of the chain denoises around it; a missing
    element was the commonest reason to reject a sample of three or more elements.
    """
    num_elements = chemsys.shape[1]
    predicted_fixed = nn.functional.one_hot(p0_fixed.argmax(dim=-1), num_elements + 1)[..., 1:]  # (B, N, V)
    present = predicted_fixed.bool().any(dim=1) | (p0_count.argmax(dim=-1) > 0).any(dim=1)  # (B, V)
    lacking = (chemsys.bool() & ~present).nonzero().tolist()
    changed = False
    for row, element in lacking:
        free = allowed_fixed[row, :, 0]  # False where a position is already required to hold an element
        fixed_score = torch.where(allowed_fixed[row, :, element + 1] & free, p0_fixed[row, :, element + 1], -1.0)
        can_count = allowed_count[row, :, element, 1:].any(dim=-1) & allowed_count[row, :, element, 0]
        count_score = torch.where(can_count, 1 - p0_count[row, :, element, 0], -1.0)
        scores = torch.cat([fixed_score, count_score])  # (2N,)
        best = int(scores.argmax())
        if scores[best] < 0:
            continue  # no position can hold it: the sample is rejected and redrawn
        position = best % len(fixed_score)
        if best < len(fixed_score):
            allowed_fixed[row, position] = False
            allowed_fixed[row, position, element + 1] = True
        else:
            allowed_count[row, position, element, 0] = False
        changed = True
    return changed


def _check(atoms: dict[str, int], request: GenerationRequest, config: SamplingConfig) -> str | None:
    """Why a sample with ``atoms`` of each element in its conventional cell breaks the request, or ``None``."""
    from pymatgen.core import Composition

    from ..metrics import composition_plausible, ionic_system

    present = {element: count for element, count in atoms.items() if count}
    if sum(present.values()) > config.max_atoms:
        return 'too many atoms'
    if set(present) != set(request.chemsys):
        return 'missing element'
    if config.plausible and ionic_system(request.chemsys) and not composition_plausible(Composition(present)):
        return 'implausible composition'
    return None


LIBRARY_SCORE_DRAWS = 8
"""Noised copies per candidate whose denoising log-likelihoods average into the model's score of a training
arrangement (at times spread evenly over the chain, the same for every candidate)."""

Pool = tuple[int, int | None]
"""Request index and space group (``None``: drawn per chain from the training distribution): chains of one pool
are interchangeable, so any valid one fills any of its missing samples."""


def _pools(requests: Sequence[GenerationRequest]) -> dict[Pool, list[tuple[int, int]]]:
    """The ``(request, slot)`` samples of each pool, the groups of a request cycled over its slots."""
    pools: dict[Pool, list[tuple[int, int]]] = {}
    for index, request in enumerate(requests):
        for slot in range(request.num_samples):
            group = request.spacegroups[slot % len(request.spacegroups)] if request.spacegroups else None
            pools.setdefault((index, group), []).append((index, slot))
    return pools


def _chains_to_run(missing: int, accepted: int, drawn: int, budget: int) -> int:
    """Chains for ``missing`` samples of a pool whose ``drawn`` chains so far gave ``accepted`` valid ones: as many as
    its acceptance says will fill them, within ``budget``. The acceptance counts one more valid of one more chain, so
    a first round runs one chain per sample and a pool without a valid chain yet runs ``drawn + 1`` per sample."""
    return max(0, min(budget, math.ceil(missing * (drawn + 1) / (accepted + 1))))


def _hand_over(
    missing: dict[Pool, list[tuple[int, int]]],
    pools: dict[Pool, list[tuple[int, int]]],
    valid: Counter[Pool],
    drawn: Counter[Pool],
    gave_up: set[Pool],
) -> bool:
    """Give the missing samples of each space group that spent its budget to the group of the same request that
    fills best, with their budget: a group where the model proposes nothing valid (Al-Mg-O with a composition filter
    in some groups) then costs the request no samples. Each group gives up once, so sampling ends. True if any moved."""
    moved = False
    for pool, slots in missing.items():
        takers = [other for other in pools if other[0] == pool[0] and other != pool and valid[other] and other not in gave_up]
        if not slots or pool in gave_up or not takers:
            continue
        taker = max(takers, key=lambda other: valid[other] / drawn[other])
        pools[taker].extend(slots)
        missing[taker].extend(slots)
        slots.clear()
        gave_up.add(pool)
        moved = True
    return moved


def _draw_spacegroups(model: WyckoffDiffusion, plan: Sequence[Pool], generator: torch.Generator) -> list[int]:
    """The space group of each planned chain: its pool's, or one drawn from the training distribution."""
    drawn = iter([])
    unset = sum(group is None for _, group in plan)
    if unset:
        weights = model.spacegroup_counts.float().clamp_min(0)
        drawn = iter(torch.multinomial(weights, unset, replacement=True, generator=generator).tolist())
    return [next(drawn) if group is None else group for _, group in plan]


def library_candidates(model: WyckoffDiffusion, request: GenerationRequest, spacegroup: int,
                       config: SamplingConfig) -> list[Protostructure]:
    """The request's elements on each training arrangement of the group (:meth:`TemplateLibrary.arrangements`) that
    obeys every condition: the atom limit, the model's orbit counts and, where asked, the composition filter."""
    from ..metrics import composition_plausible, ionic_system
    from ..templates import shipped_templates

    filtered = (config.plausible or config.plausible_library) and ionic_system(request.chemsys)
    return [
        candidate for candidate in shipped_templates().arrangements(request.chemsys, spacegroup, config.max_atoms)
        if candidate.element_matrix().max() <= model.config.max_count
        and (not filtered or composition_plausible(candidate.composition))
    ]


@torch.no_grad()
def library_scores(
    model: WyckoffDiffusion,
    candidates: Sequence[Protostructure],
    conditions: Conditions,
    config: SamplingConfig,
    generator: torch.Generator,
) -> torch.Tensor:
    """(C,) the model's log-likelihood score of each candidate under one request's ``conditions`` (batch of one): the
    mean over :data:`LIBRARY_SCORE_DRAWS` noised copies of the log-probability the guided denoiser gives its clean
    variables, the quantity training minimizes; plus, where the checkpoint has an energy head and the request an
    e_above_hull, the head's weighted log-likelihood of that energy (:func:`_energy_term`)."""
    device = model.spacegroup_counts.device
    elements = model.config.elements
    offset = model.denoiser.position_offset.cpu().numpy()
    num_timesteps = model.config.num_timesteps
    times = [max(1, round(num_timesteps * (k + 0.5) / LIBRARY_SCORE_DRAWS)) for k in range(LIBRARY_SCORE_DRAWS)]
    scores = []
    for start in range(0, len(candidates), config.batch_size):
        chunk = [encode(c, elements, model.config.max_count) for c in candidates[start : start + config.batch_size]]
        batch = collate(chunk, len(elements), offset).to(device)
        size = len(chunk)
        expanded = Conditions(conditions.chemsys.expand(size, -1), batch.spacegroup,
                              conditions.e_above_hull.expand(size), conditions.mask.expand(size, -1))
        nll = torch.zeros(size, device=device)
        for t in times:
            steps = torch.full((size,), t, dtype=torch.long, device=device)
            logits = _guided_logits(model, model.noisy(batch, steps, generator), steps, expanded, config)
            nll += x0_nll(batch, *(x / config.temperature for x in logits))
        scores.append(-nll / len(times))
    return torch.cat(scores) + _energy_term(model, candidates, conditions, config).to(device)


def _energy_term(model: WyckoffDiffusion, candidates: Sequence[Protostructure], conditions: Conditions,
                 config: SamplingConfig) -> torch.Tensor:
    """(C,) ``energy_guidance`` times the energy head's log-likelihood of the requested e_above_hull; zeros without a
    head, a weight or a requested energy."""
    head = model.energy_head
    if head is None or not config.energy_guidance or not candidates \
            or not conditions.mask[0, Condition.E_ABOVE_HULL]:
        return torch.zeros(len(candidates))
    chemsys = [element for element, given in zip(model.config.elements, conditions.chemsys[0].tolist()) if given]
    features = pooled_features(model, candidates, [chemsys] * len(candidates), config.batch_size)
    target = float(conditions.e_above_hull[0])
    return torch.from_numpy(config.energy_guidance * head.log_likelihood(features, target)).float()


def _choose_from_library(
    model: WyckoffDiffusion,
    candidates: Sequence[Protostructure],
    count: int,
    conditions: Conditions,
    config: SamplingConfig,
    generator: torch.Generator,
) -> list[Protostructure]:
    """Up to ``count`` distinct ``candidates`` (:func:`library_candidates` of one group), drawn without replacement in
    proportion to the model's likelihood (Gumbel top-k over :func:`library_scores`)."""
    if not candidates or not count:
        return []
    scores = library_scores(model, candidates, conditions, config, generator)
    uniform = torch.rand(len(candidates), generator=generator, device=scores.device).clamp_min(1e-12)
    keys = scores - torch.log(-torch.log(uniform))
    return [candidates[i] for i in keys.argsort(descending=True)[:count].tolist()]


def _library_counts(wanted: dict[Pool, int], available: dict[Pool, int], across_groups: bool) -> dict[Pool, int]:
    """Known arrangements each group takes: its share (``wanted``) or all it has. ``across_groups`` gives the share a
    group lacks to the groups of the same request that have more, one arrangement at a time in the groups' order."""
    counts = {pool: min(wanted[pool], available[pool]) for pool in wanted}
    for index in {pool[0] for pool in wanted} if across_groups else ():
        own = [pool for pool in wanted if pool[0] == index]
        short = sum(wanted[pool] - counts[pool] for pool in own)
        while short and (spare := [pool for pool in own if counts[pool] < available[pool]]):
            for pool in spare[:short]:
                counts[pool] += 1
                short -= 1
    return counts


def _vocabulary_check(model: WyckoffDiffusion, request: GenerationRequest) -> None:
    unknown = [element for element in request.chemsys if element not in model.config.elements]
    if unknown:
        raise ConditionError(
            f'element(s) {", ".join(unknown)} are not in the model vocabulary of {len(model.config.elements)} elements '
            f'({" ".join(model.config.elements)}): choose another chemical system or a model trained on them'
        )


def generate(
    model: WyckoffDiffusion, request: GenerationRequest, config: SamplingConfig, generator: torch.Generator
) -> GenerationResult:
    """Draw ``request.num_samples`` protostructures that obey the request, redrawing what is missing within a budget
    of ``max_draws`` chains per sample.

    :param generator: on the model's device; the same seed on the same device gives the same samples.
    """
    return generate_many(model, [request], config, generator)[0]


def generate_many(
    model: WyckoffDiffusion, requests: Sequence[GenerationRequest], config: SamplingConfig, generator: torch.Generator
) -> list[GenerationResult]:
    """:func:`generate` for several requests at once: their chains share batches, which is many times faster than one
    call per request when each asks for few samples (a benchmark's held-out requests). ``seconds`` is the total."""
    for request in requests:
        _vocabulary_check(model, request)
    if config.energy_screen > 1 and model.energy_head is not None:
        return _screened(model, requests, config, generator)
    started = time.perf_counter()
    device = model.spacegroup_counts.device
    chemsys = torch.tensor(
        [[element in request.chemsys for element in model.config.elements] for request in requests],
        dtype=torch.float32, device=device
    )
    mask = torch.tensor(
        [[1.0, 1.0, float(request.e_above_hull is not None)] for request in requests], device=device
    )  # columns in Condition order: chemical system and space group are always given
    energies = torch.tensor([request.e_above_hull or 0.0 for request in requests], device=device)
    accepted: dict[tuple[int, int], GeneratedSample] = {}
    pools = _pools(requests)
    missing = {pool: list(slots) for pool, slots in pools.items()}
    library, wanted = {}, {}
    for pool, slots in missing.items():
        if pool[1] is not None and (share := math.ceil(config.known_prototypes * len(slots))):
            candidates = library_candidates(model, requests[pool[0]], pool[1], config)
            library[pool] = [c for c in candidates if c.label not in requests[pool[0]].exclude]
            wanted[pool] = share
    counts = _library_counts(wanted, {pool: len(c) for pool, c in library.items()}, config.known_prototypes_across_groups)
    spare: dict[int, list[Protostructure]] = {}  # chosen in a group beyond its own share, for the groups that lack
    for (index, group), candidates in library.items():
        conditions = Conditions(chemsys=chemsys[index : index + 1], spacegroup=torch.tensor([group], device=device),
                                e_above_hull=energies[index : index + 1], mask=mask[index : index + 1])
        chosen = _choose_from_library(model, candidates, counts[index, group], conditions, config, generator)
        for protostructure in chosen[: wanted[index, group]]:
            accepted[missing[index, group].pop(0)] = GeneratedSample(protostructure, draws=0)
        spare.setdefault(index, []).extend(chosen[wanted[index, group] :])
    for pool, candidates in library.items():
        for _ in range(min(wanted[pool] - len(candidates), len(spare[pool[0]]))):
            accepted[missing[pool].pop(0)] = GeneratedSample(spare[pool[0]].pop(0), draws=0)
    drawn, valid, excluded = Counter[Pool](), Counter[Pool](), Counter[Pool]()
    rejected = [Counter[str]() for _ in requests]
    gave_up: set[Pool] = set()
    cut_excluded = True  # until no group can take a stalled group's samples: then each spends its whole budget
    rounds = 0
    while True:
        left = [config.max_draws * request.num_samples for request in requests]  # the bound holds per request
        for pool, count in drawn.items():
            left[pool[0]] -= count
        plan = []
        for pool, slots in missing.items():
            budget = config.max_draws * len(pools[pool]) - drawn[pool]
            if cut_excluded and excluded[pool]:  # chains that may yet draw excluded labels, within the allowance
                budget = min(budget, max(0, EXCLUDED_DRAWS * len(pools[pool]) - excluded[pool]))
            chains = _chains_to_run(len(slots), valid[pool], drawn[pool], min(budget, left[pool[0]]))
            left[pool[0]] -= chains
            plan += [pool] * chains
        if not plan:
            if _hand_over(missing, pools, valid, drawn, gave_up):
                continue
            if cut_excluded and any(excluded[pool] for pool, slots in missing.items() if slots):
                cut_excluded = False
                continue
            break
        rounds += 1
        for start in range(0, len(plan), config.batch_size):
            chunk = plan[start : start + config.batch_size]
            for pool, result in zip(chunk, _run_chains(model, chunk, requests, chemsys, energies, mask, config,
                                                       generator), strict=True):
                drawn[pool] += 1
                reason = result if isinstance(result, str) else None if missing[pool] else 'surplus'
                if reason is None:
                    valid[pool] += 1
                    accepted[missing[pool].pop(0)] = GeneratedSample(result[0], rounds, repaired=result[1])
                else:
                    rejected[pool[0]][reason] += 1
                    excluded[pool] += reason == EXCLUDED
    seconds = time.perf_counter() - started
    return [
        GenerationResult(
            samples=[accepted[key] for key in sorted(accepted) if key[0] == index],
            num_drawn=sum(count for pool, count in drawn.items() if pool[0] == index),
            num_failed=sum(len(slots) for pool, slots in missing.items() if pool[0] == index),
            rejected=dict(rejected[index]),
            seconds=seconds,
        )
        for index in range(len(requests))
    ]


def _screened(
    model: WyckoffDiffusion, requests: Sequence[GenerationRequest], config: SamplingConfig, generator: torch.Generator
) -> list[GenerationResult]:
    """``energy_screen`` times the samples of each request with an e_above_hull, of which those the energy head
    predicts closest to it are kept, in the order they were drawn. A protostructure drawn several times is kept as
    often as it was drawn and ranks where its prediction puts it: keeping every distinct one first would keep them all
    where exclusion leaves few (Ti-O's second round kept 85-90 distinct of 96 that way, and its two targets ended 0.02
    eV/atom apart: docs/rounds.md)."""
    wide = [replace(r, num_samples=min(MAX_SAMPLES, r.num_samples * config.energy_screen))
            if r.e_above_hull is not None else r for r in requests]
    results = generate_many(model, wide, replace(config, energy_screen=1), generator)
    for request, result in zip(requests, results, strict=True):
        if request.e_above_hull is None:
            continue
        protostructures = [sample.protostructure for sample in result.samples]
        if protostructures:
            features = pooled_features(model, protostructures, [request.chemsys] * len(protostructures),
                                       config.batch_size)
            distance = model.energy_head.distance(features, request.e_above_hull)
            kept = sorted(np.argsort(distance, kind='stable')[: request.num_samples].tolist())
            result.rejected['screened'] = len(protostructures) - len(kept)
            result.samples = [result.samples[position] for position in kept]
        result.num_failed = request.num_samples - len(result.samples)
    return results


def _run_chains(
    model: WyckoffDiffusion,
    plan: Sequence[Pool],
    requests: Sequence[GenerationRequest],
    chemsys: torch.Tensor,
    energies: torch.Tensor,
    mask: torch.Tensor,
    config: SamplingConfig,
    generator: torch.Generator,
) -> list[Protostructure | str]:
    """One reverse chain per planned pool, in one batch: each chain's protostructure, or why it breaks its request."""
    device = model.spacegroup_counts.device
    elements = model.config.elements
    groups = _draw_spacegroups(model, plan, generator)
    graphs = []
    for group in groups:
        fixed, multiplicity = structure_tensors(group)
        empty = np.zeros(len(fixed), dtype=np.int64)
        counts = np.zeros((len(fixed), len(elements)), np.int64)
        graphs.append(EncodedCrystal(group, fixed, multiplicity, empty, counts))
    batch = collate(graphs, len(elements), model.denoiser.position_offset.cpu().numpy()).to(device)
    rows = torch.tensor([index for index, _ in plan], device=device)
    conditions = Conditions(
        chemsys=chemsys[rows], spacegroup=batch.spacegroup, e_above_hull=energies[rows], mask=mask[rows]
    )
    scores_fixed, scores_count = (x.cpu().numpy() for x in _reverse_chain(model, batch, conditions, config, generator))
    x_fixed, x_count = scores_fixed.argmax(axis=-1), scores_count.argmax(axis=-1)
    results: list[tuple[Protostructure, bool] | str] = []
    for row, ((index, _), group) in enumerate(zip(plan, groups, strict=True)):
        request, n = requests[index], len(graphs[row].fixed)
        reason = _check(_atoms(x_fixed[row, :n], x_count[row, :n], graphs[row].multiplicity, elements), request, config)
        repaired = False
        if reason is not None and config.constrained_last_step:
            columns = [elements.index(element) for element in request.chemsys]
            draw = constrained_argmax(
                scores_fixed[row, :n], scores_count[row, :n], graphs[row].multiplicity, columns, config.max_atoms,
                lambda atoms: _check(dict(zip(request.chemsys, atoms, strict=True)), request, config) is None,
            )
            if draw is not None:
                (x_fixed[row, :n], x_count[row, :n]), reason, repaired = draw, None, True
        if reason is not None:
            results.append(reason)
            continue
        protostructure = decode(group, x_fixed[row, :n], x_count[row, :n], elements)
        results.append(EXCLUDED if protostructure.label in request.exclude else (protostructure, repaired))
    return results


def _atoms(x_fixed: np.ndarray, x_count: np.ndarray, multiplicity: np.ndarray, elements: Sequence[str]) -> dict[str, int]:
    """Atoms of each vocabulary element in the conventional cell of one chain's draw (fixed positions first)."""
    atoms = np.bincount(x_fixed, weights=multiplicity, minlength=len(elements) + 1)[1:]
    atoms += (x_count * multiplicity[:, None]).sum(axis=0)
    return {element: int(count) for element, count in zip(elements, atoms, strict=True) if count}


def generate_json(
    request: GenerationRequest,
    config: SamplingConfig,
    *,
    seed: int = 0,
    checkpoint: str | Path | None = None,
    device: str | None = None,
) -> dict[str, Any]:
    """Load a checkpoint (default: the shipped one), generate, and return the ``{'samples', 'meta'}`` document."""
    from .checkpoint import load_checkpoint, select_device, shipped_checkpoint_path

    path = Path(checkpoint) if checkpoint is not None else shipped_checkpoint_path()
    chosen = select_device(device)
    loaded = load_checkpoint(path, chosen)
    _vocabulary_check(loaded.model, request)
    generator = torch.Generator(device=chosen).manual_seed(seed)
    result = generate(loaded.model, request, config, generator)
    conditions = {'chemsys': '-'.join(request.chemsys), 'e_above_hull': request.e_above_hull}
    samples = [
        {
            'protostructure': sample.protostructure.label,
            'spacegroup': sample.protostructure.spacegroup,
            'chemsys': sample.protostructure.chemsys,
            'num_atoms': sample.protostructure.num_atoms,
            'draws': sample.draws,
            'origin': sample.origin,
            'repaired': sample.repaired,
            'conditions': {**conditions, 'spacegroup': sample.protostructure.spacegroup},
        }
        for sample in result.samples
    ]
    meta = {
        'checkpoint': str(path),
        'checkpoint_sha256': loaded.sha256,
        'checkpoint_stage': loaded.stage,
        'dataset_hash': loaded.dataset_hash,
        'seed': seed,
        'device': str(chosen),
        'steps': len(reverse_steps(loaded.model_config.num_timesteps, config.num_steps)) - 1,
        'num_timesteps': loaded.model_config.num_timesteps,
        'guidance': config.guidance_scale,
        'guided': list(config.guided),
        'temperature': config.temperature,
        'plausible': config.plausible,
        'constrained_last_step': config.constrained_last_step,
        'known_prototypes': config.known_prototypes,
        'known_prototypes_across_groups': config.known_prototypes_across_groups,
        'energy_guidance': config.energy_guidance,
        'energy_screen': config.energy_screen,
        'energy_head_rows': loaded.model.energy_head.rows if loaded.model.energy_head is not None else None,
        'max_atoms': config.max_atoms,
        'max_draws': config.max_draws,
        'requested': {**conditions, 'spacegroups': list(request.spacegroups), 'num_samples': request.num_samples,
                      'excluded': len(request.exclude)},
        'num_drawn': result.num_drawn,
        'num_failed': result.num_failed,
        'num_repaired': sum(sample.repaired for sample in result.samples),
        'rejected': result.rejected,
        'seconds': round(result.seconds, 4),
    }
    return {'samples': samples, 'meta': meta}
