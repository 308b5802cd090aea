"""Sampling obeys the hard constraints every time, reports its draws, and refuses impossible requests."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import replace

import numpy as np
import pytest
import torch

from aiida_wyckoffdiff.exceptions import ConditionError, ConfigurationError, ProtostructureError
from aiida_wyckoffdiff.model.adapters import Condition, Conditions
from aiida_wyckoffdiff.model.config import SamplingConfig
from aiida_wyckoffdiff.model.encoding import EncodedCrystal, collate, decode, structure_tensors
from aiida_wyckoffdiff.metrics import composition_plausible
from aiida_wyckoffdiff.model.sampling import (
    EXCLUDED_DRAWS,
    GenerationRequest,
    GenerationResult,
    _guided_logits,
    _reverse_chain,
    generate,
    reverse_steps,
)

SPACEGROUPS = (225, 194, 62, 227)


def chains(**settings) -> SamplingConfig:
    """Sampling by reverse chains alone, without the library share (``known_prototypes``) or, unless asked, the
    composition filter or the constrained last step: the mechanics of redrawing tested here."""
    return SamplingConfig(**{'known_prototypes': 0.0, 'plausible': False, 'constrained_last_step': False, **settings})


@pytest.fixture
def adapted_model(tiny_model):
    """Random adapters, so that guidance and conditioning really change the logits."""
    tiny_model.add_adapters(0.05, 0.1)
    for parameter in tiny_model.denoiser.adapters.parameters():
        torch.nn.init.normal_(parameter, std=0.3)
    return tiny_model


def test_reverse_steps_are_a_strided_subset() -> None:
    assert reverse_steps(1000, 4) == [1000, 750, 500, 250, 0]
    assert reverse_steps(20, 20) == list(range(20, -1, -1))
    with pytest.raises(ConfigurationError, match='only T = 20'):
        reverse_steps(20, 21)


def test_raw_chains_never_leave_the_chemical_system_or_the_atom_limit(adapted_model) -> None:
    """Before any rejection: every chain keeps its space group, its elements and its per-orbit atom limit."""
    elements = adapted_model.config.elements
    chemsys = torch.tensor([element in ('Li', 'O') for element in elements], dtype=torch.float32)
    graphs = []
    for group in SPACEGROUPS * 8:
        fixed, multiplicity = structure_tensors(group)
        graphs.append(
            EncodedCrystal(
                group,
                fixed,
                multiplicity,
                0 * multiplicity,
                torch.zeros(len(fixed), len(elements), dtype=torch.long).numpy(),
            )
        )
    batch = collate(graphs, len(elements), adapted_model.denoiser.position_offset.numpy())
    size = len(graphs)
    conditions = Conditions(
        chemsys.expand(size, -1), batch.spacegroup, torch.zeros(size), torch.ones(size, len(Condition))
    )
    config = SamplingConfig(num_steps=10, max_atoms=24)
    scores = _reverse_chain(adapted_model, batch, conditions, config, torch.Generator().manual_seed(3))
    x_fixed, x_count = (score.argmax(dim=-1) for score in scores)
    assert not x_fixed[~batch.fixed].any() and not x_count[~batch.free].any()
    assert (x_count * batch.multiplicity[..., None] <= 24).all()
    for row, graph in enumerate(graphs):
        n = len(graph.fixed)
        try:
            protostructure = decode(graph.spacegroup, x_fixed[row, :n].numpy(), x_count[row, :n].numpy(), elements)
        except ProtostructureError:
            continue  # empty: rejected and redrawn by generate()
        assert protostructure.spacegroup == graph.spacegroup
        assert set(protostructure.elements) <= {'Li', 'O'}


@pytest.mark.parametrize('guidance', [0.0, 1.0, 2.0])
def test_every_accepted_sample_obeys_the_request(adapted_model, guidance) -> None:
    request = GenerationRequest(('O', 'Li'), (225, 194), e_above_hull=0.0, num_samples=12)
    config = chains(num_steps=5, guidance_scale=guidance, max_atoms=40, max_draws=30)
    result = generate(adapted_model, request, config, torch.Generator().manual_seed(0))
    assert len(result.samples) + result.num_failed == 12
    assert result.num_drawn <= config.max_draws * 12
    assert result.num_drawn - len(result.samples) == sum(result.rejected.values())
    assert result.samples, 'a random tiny model should still find some Li-O protostructures in 30 draws'
    for sample in result.samples:
        assert sample.protostructure.spacegroup in (225, 194)
        assert sample.protostructure.chemsys == 'Li-O'
        assert sample.protostructure.num_atoms <= 40
        assert 1 <= sample.draws <= config.max_draws


def test_a_ternary_returns_every_requested_sample_redrawing_what_is_missing(adapted_model) -> None:
    """Three elements in few atoms are rarely all drawn at once; later rounds run more chains for what is missing
    (by the acceptance so far) until every sample is there."""
    request = GenerationRequest(('Al', 'Mg', 'O'), (2, 1), e_above_hull=0.0, num_samples=10)
    config = chains(num_steps=4, require_elements_from=1.0)  # redrawing alone, no element required
    result = generate(adapted_model, request, config, torch.Generator().manual_seed(0))
    assert result.num_failed == 0 and len(result.samples) == 10
    assert result.rejected.get('missing element', 0) > 0 and max(sample.draws for sample in result.samples) > 1
    assert [s.protostructure.spacegroup for s in result.samples] == [2, 1] * 5
    assert all(s.protostructure.chemsys == 'Al-Mg-O' for s in result.samples)


def test_requiring_the_missing_elements_in_the_chain_completes_the_samples(adapted_model) -> None:
    """From the middle of the chain on, an element the predicted structure lacks is required where it is likeliest:
    few chains then end without one, so fewer are run."""
    request = GenerationRequest(('Al', 'Mg', 'O', 'Ti'), (2, 1), e_above_hull=0.0, num_samples=10)
    results = {share: generate(adapted_model, request, chains(num_steps=6, require_elements_from=share),
                               torch.Generator().manual_seed(0)) for share in (1.0, 0.5)}
    missing = {share: result.rejected.get('missing element', 0) for share, result in results.items()}
    assert len(results[0.5].samples) == 10 and 2 * missing[0.5] < missing[1.0]
    assert results[0.5].num_drawn < results[1.0].num_drawn
    assert all(s.protostructure.chemsys == 'Al-Mg-O-Ti' for s in results[0.5].samples)


def test_an_impossible_request_stops_at_its_budget(adapted_model) -> None:
    """Three elements can never fit in 4 atoms of Fm-3m (orbits of 4 and more): the budget bounds the chains run."""
    config = chains(num_steps=2, max_atoms=4, max_draws=6)
    result = generate(adapted_model, GenerationRequest(('Li', 'Mg', 'O'), (225,), num_samples=3), config,
                      torch.Generator().manual_seed(0))
    assert result.samples == [] and result.num_failed == 3
    assert result.num_drawn == config.max_draws * 3 == sum(result.rejected.values())


def test_space_groups_are_cycled_in_order(adapted_model) -> None:
    request = GenerationRequest(('Li',), (229, 221), num_samples=4)
    result = generate(
        adapted_model, request, chains(num_steps=3, max_draws=50), torch.Generator().manual_seed(1)
    )
    assert [s.protostructure.spacegroup for s in result.samples] == [229, 221, 229, 221][: len(result.samples)]


def test_same_seed_same_samples(adapted_model) -> None:
    request = GenerationRequest(('Li', 'O'), (225,), e_above_hull=0.1, num_samples=6)
    config = chains(num_steps=4, max_draws=5)
    first, second = (generate(adapted_model, request, config, torch.Generator().manual_seed(7)) for _ in range(2))
    assert [s.protostructure for s in first.samples] == [s.protostructure for s in second.samples]


@pytest.mark.parametrize(
    ('kwargs', 'error', 'match'),
    [
        ({'chemsys': ('Li', 'Xx')}, ConditionError, 'not an element symbol'),
        ({'chemsys': ()}, ConditionError, 'empty'),
        ({'spacegroups': (0,)}, ProtostructureError, 'does not exist'),
        ({'spacegroups': (231,)}, ProtostructureError, 'does not exist'),
        ({'num_samples': 0}, ConditionError, 'number of samples'),
        ({'num_samples': -5}, ConditionError, 'number of samples'),
        ({'num_samples': 10**9}, ConditionError, 'number of samples'),
        ({'num_samples': 2.5}, ConditionError, 'number of samples'),
        ({'e_above_hull': -0.1}, ConditionError, 'e_above_hull'),
        ({'e_above_hull': math.nan}, ConditionError, 'e_above_hull'),
        ({'e_above_hull': 1e6}, ConditionError, 'e_above_hull'),
    ],
)
def test_bad_requests_are_refused(kwargs, error, match) -> None:
    arguments = {'chemsys': ('Li', 'O'), **kwargs}
    with pytest.raises(error, match=match):
        GenerationRequest(**arguments)


def test_elements_outside_the_vocabulary_are_refused(tiny_model) -> None:
    with pytest.raises(ConditionError, match='Pu are not in the model vocabulary'):
        generate(tiny_model, GenerationRequest(('Li', 'Pu')), SamplingConfig(), torch.Generator())


@pytest.mark.parametrize(('field', 'value'), [('num_steps', 0), ('max_atoms', 0), ('max_draws', 0), ('batch_size', 0),
                                              ('require_elements_from', 1.5), ('require_elements_from', -0.1)])
def test_bad_sampling_settings_are_refused(field, value) -> None:
    with pytest.raises(ConfigurationError):
        SamplingConfig(**{field: value})


def _logits(model, guided, guidance, e_above_hull=0.0, given=(1.0, 1.0, 1.0)):
    elements = model.config.elements
    fixed, multiplicity = structure_tensors(225)
    graph = EncodedCrystal(225, fixed, multiplicity, 0 * multiplicity, np.zeros((len(fixed), len(elements)), np.int64))
    batch = collate([graph], len(elements), model.denoiser.position_offset.numpy())
    chemsys = torch.tensor([[element in ('Li', 'O') for element in elements]], dtype=torch.float32)
    conditions = Conditions(chemsys, batch.spacegroup, torch.tensor([e_above_hull]), torch.tensor([given]))
    config = SamplingConfig(guidance_scale=guidance, guided=guided)
    return _guided_logits(model, batch, torch.tensor([10]), conditions, config), (model, batch, conditions)


def test_guidance_contrasts_only_the_guided_conditions(adapted_model) -> None:
    (fixed, count), (model, batch, conditions) = _logits(adapted_model, ('e_above_hull',), 2.0)
    full = model.denoiser(batch, torch.tensor([10]), conditions)
    without_energy = model.denoiser(batch, torch.tensor([10]), conditions.masked(torch.tensor([1.0, 1.0, 0.0])))
    assert torch.allclose(fixed, 2 * full[0] - without_energy[0], atol=1e-5)
    assert torch.allclose(count, 2 * full[1] - without_energy[1], atol=1e-5)
    # Textbook guidance contrasts with the base model, which knows nothing of the chemical system.
    (fixed_all, _), _ = _logits(adapted_model, ('chemsys', 'spacegroup', 'e_above_hull'), 2.0)
    base = model.denoiser(batch, torch.tensor([10]), None)
    assert torch.allclose(fixed_all, 2 * full[0] - base[0], atol=1e-5)
    assert not torch.allclose(fixed_all, fixed, atol=1e-3)


def test_guidance_without_a_given_guided_condition_is_plain_conditioning(adapted_model) -> None:
    (fixed, count), (model, batch, conditions) = _logits(adapted_model, ('e_above_hull',), 3.0, given=(1.0, 1.0, 0.0))
    plain = model.denoiser(batch, torch.tensor([10]), conditions)
    assert torch.equal(fixed, plain[0]) and torch.equal(count, plain[1])


def test_unknown_guided_condition_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="cannot guide on 'temperature'"):
        SamplingConfig(guided=('chemsys', 'temperature'))


def test_plausible_sampling_returns_only_balanced_compositions(adapted_model) -> None:
    request = GenerationRequest(('Li', 'O'), (225, 194, 62), e_above_hull=0.0, num_samples=12)
    config = chains(num_steps=5, max_atoms=40, max_draws=60, plausible=True)
    result = generate(adapted_model, request, config, torch.Generator().manual_seed(0))
    assert result.samples
    assert all(composition_plausible(s.protostructure.composition) for s in result.samples)
    unfiltered = generate(
        adapted_model, request, chains(num_steps=5, max_atoms=40, max_draws=60), torch.Generator().manual_seed(0)
    )
    assert 'implausible composition' not in unfiltered.rejected
    assert result.rejected.get('implausible composition', 0) > 0


def test_requests_sampled_together_each_obey_their_own_request(adapted_model) -> None:
    from aiida_wyckoffdiff.model.sampling import generate_many

    requests = [
        GenerationRequest(('Li', 'O'), (225,), e_above_hull=0.0, num_samples=5),
        GenerationRequest(('Mg',), (229, 221), num_samples=3),
        GenerationRequest(('Ti', 'O'), (136,), e_above_hull=0.3, num_samples=4),
    ]
    config = chains(num_steps=4, max_atoms=40, max_draws=20, batch_size=7)
    results = generate_many(adapted_model, requests, config, torch.Generator().manual_seed(2))
    assert len(results) == 3
    for request, result in zip(requests, results, strict=True):
        assert len(result.samples) + result.num_failed == request.num_samples
        assert result.num_drawn - len(result.samples) == sum(result.rejected.values())
        for sample in result.samples:
            assert sample.protostructure.spacegroup in request.spacegroups
            assert set(sample.protostructure.elements) == set(request.chemsys)
    alone = generate(adapted_model, requests[0], config, torch.Generator().manual_seed(2))
    together = generate_many(adapted_model, requests[:1], config, torch.Generator().manual_seed(2))[0]
    assert [s.protostructure for s in alone.samples] == [s.protostructure for s in together.samples]


def test_the_composition_filter_applies_only_where_charge_balance_does() -> None:
    """Ta3Si fails the oxidation-state check as LiO3 does, but a silicide is no ionic crystal: only LiO3 is redrawn."""
    from aiida_wyckoffdiff.model.sampling import _check
    from aiida_wyckoffdiff.symmetry import Protostructure

    config = SamplingConfig(plausible=True)
    for label, expected in (('AB3_cP4_221_a_c:Si-Ta', None), ('AB3_cP4_221_a_c:Li-O', 'implausible composition')):
        protostructure = Protostructure.from_label(label)
        assert not composition_plausible(protostructure.composition)
        request = GenerationRequest(tuple(label.split(':')[1].split('-')), (221,), num_samples=1)
        assert _check(protostructure.element_counts, request, config) == expected
        assert _check(protostructure.element_counts, request, SamplingConfig(plausible=False)) is None


def test_a_cold_chain_keeps_to_the_likeliest_classes(adapted_model, monkeypatch) -> None:
    """Temperature divides the logits: with a network that slightly prefers the first element everywhere, cold chains
    all end in that preference, while chains at temperature 1 still differ from one another."""
    from aiida_wyckoffdiff.model import sampling

    elements = adapted_model.config.elements
    graphs = [EncodedCrystal(225, *structure_tensors(225), 0 * structure_tensors(225)[1],
                             torch.zeros(len(structure_tensors(225)[0]), len(elements), dtype=torch.long).numpy())
              for _ in range(8)]
    batch = collate(graphs, len(elements), adapted_model.denoiser.position_offset.numpy())
    size, positions = len(graphs), batch.fixed.shape[1]

    def preferring_the_first_element(model, noisy, times, conditions, config):  # noqa: ANN001, ANN202
        fixed = torch.zeros(size, positions, len(elements) + 1)
        fixed[..., 1] = 1.0
        return fixed, torch.zeros(size, positions, len(elements), adapted_model.config.max_count + 1)

    monkeypatch.setattr(sampling, '_guided_logits', preferring_the_first_element)
    chemsys = torch.ones(size, len(elements))
    conditions = Conditions(chemsys, batch.spacegroup, torch.zeros(size), torch.ones(size, len(Condition)))
    ends = {}
    for temperature in (1e-3, 1.0):
        config = SamplingConfig(num_steps=10, max_atoms=60, temperature=temperature, require_elements_from=1.0)
        x_fixed = _reverse_chain(adapted_model, batch, conditions, config, torch.Generator().manual_seed(0))[0].argmax(-1)
        ends[temperature] = {tuple(row.tolist()) for row in x_fixed}
    assert len(ends[1e-3]) == 1 < len(ends[1.0])
    with pytest.raises(ConfigurationError, match='temperature must be positive'):
        SamplingConfig(temperature=0)


def test_known_prototypes_are_chosen_from_the_library_and_chains_fill_the_rest(adapted_model) -> None:
    """The share of known arrangements is chosen, without any chain, among the training crystals' prototypes of the
    group with the request's elements: distinct, within the atom limit. Chains fill the other samples, and those the
    library cannot (within 8 atoms, rocksalt is Fm-3m's only binary arrangement): N of N."""
    from aiida_wyckoffdiff.templates import shipped_templates

    request = GenerationRequest(('Li', 'O'), (225,), e_above_hull=0.0, num_samples=8)
    result = generate(adapted_model, request, SamplingConfig(num_steps=5, max_atoms=40, known_prototypes=0.5, plausible=False),
                      torch.Generator().manual_seed(0))
    library = [sample.protostructure for sample in result.samples if sample.origin == 'library']
    assert len(result.samples) == 8 and len(library) == 4 == len({p.label for p in library})
    assert set(library) <= set(shipped_templates().arrangements(('Li', 'O'), 225, max_atoms=40))
    assert result.num_drawn - sum(result.rejected.values()) == 4  # chains only for the other four

    tight = generate(adapted_model, replace(request, num_samples=4),
                     SamplingConfig(num_steps=5, max_atoms=8, known_prototypes=1.0, plausible=False), torch.Generator().manual_seed(0))
    assert len(tight.samples) == 4
    assert [s.protostructure.label for s in tight.samples if s.origin == 'library'] == ['AB_cF8_225_a_b:Li-O']


def test_excluded_protostructures_never_come_back(adapted_model) -> None:
    """What an earlier round relaxed is excluded: the library takes its next arrangements, chains that draw an
    excluded label are drawn again (counted), and every requested sample still comes back."""
    config = SamplingConfig(num_steps=5, max_atoms=40, known_prototypes=0.5, plausible=False)
    request = GenerationRequest(('Li', 'O'), (225, 194), e_above_hull=0.0, num_samples=16)
    first = generate(adapted_model, request, config, torch.Generator().manual_seed(0))
    seen = {sample.protostructure.label for sample in first.samples}
    again = generate(adapted_model, replace(request, exclude=seen), config, torch.Generator().manual_seed(0))
    assert len(again.samples) == 16 and not seen & {sample.protostructure.label for sample in again.samples}
    assert sum(sample.origin == 'library' for sample in again.samples) == 8, 'the library has more arrangements'
    repeated = generate(adapted_model, replace(request, exclude=seen), chains(num_steps=5, max_atoms=40),
                        torch.Generator().manual_seed(0))
    assert repeated.rejected.get('excluded', 0) > 0 and not seen & {s.protostructure.label for s in repeated.samples}


def test_a_group_that_keeps_drawing_excluded_labels_hands_its_samples_over_early(adapted_model) -> None:
    """Within 8 atoms Li-O has only rocksalt in Fm-3m: with it excluded, every valid Fm-3m chain is excluded, so after
    ``EXCLUDED_DRAWS`` per sample its samples go to P6_3/mmc instead of spending the whole budget of ``max_draws``.
    Alone, with no group to take them, Fm-3m still spends its whole budget before giving up."""
    config = chains(num_steps=5, max_atoms=8, constrained_last_step=True)
    rocksalt = frozenset({'AB_cF8_225_a_b:Li-O', 'AB_cF8_225_b_a:Li-O'})
    request = GenerationRequest(('Li', 'O'), (225, 194), e_above_hull=0.0, num_samples=8, exclude=rocksalt)
    result = generate(adapted_model, request, config, torch.Generator().manual_seed(0))
    assert len(result.samples) == 8 and {s.protostructure.spacegroup for s in result.samples} == {194}
    assert 0 < result.rejected['excluded'] <= EXCLUDED_DRAWS * 4 < config.max_draws * 4
    alone = generate(adapted_model, replace(request, spacegroups=(225,), num_samples=2), replace(config, max_draws=12),
                     torch.Generator().manual_seed(0))
    assert alone.samples == [] and alone.num_drawn == 12 * 2 and alone.rejected['excluded'] > EXCLUDED_DRAWS * 2


def test_a_group_short_of_known_arrangements_can_take_them_from_the_other_groups(adapted_model) -> None:
    """Within 8 atoms Fm-3m has one Li-O arrangement (rocksalt) and P6_3/mmc 21: with ``known_prototypes_across_groups``
    the three Fm-3m samples rocksalt cannot fill are chosen among P6_3/mmc's instead of drawn by chains, all distinct."""
    request = GenerationRequest(('Li', 'O'), (225, 194), e_above_hull=0.0, num_samples=8)
    settings = {'num_steps': 5, 'max_atoms': 8, 'known_prototypes': 1.0, 'plausible': False}
    alone, across = (generate(adapted_model, request, SamplingConfig(**settings, known_prototypes_across_groups=flag),
                              torch.Generator().manual_seed(0)) for flag in (False, True))
    library = {name: [s.protostructure for s in result.samples if s.origin == 'library']
               for name, result in (('alone', alone), ('across', across))}
    assert len(alone.samples) == len(across.samples) == 8
    assert len(library['alone']) == 5 and alone.num_drawn - sum(alone.rejected.values()) == 3
    assert len(library['across']) == 8 == len(set(library['across'])) and across.num_drawn == 0
    assert Counter(p.spacegroup for p in library['across']) == {225: 1, 194: 7}
    assert library['alone'][0].label == library['across'][0].label == 'AB_cF8_225_a_b:Li-O'


def test_the_library_share_can_keep_to_balanced_compositions_without_filtering_the_chains(adapted_model) -> None:
    """``plausible_library``: only the charge-balanced Li-O arrangements of Fm-3m (antifluorite Li2O among them) are
    candidates; the chains are not filtered, and a system where charge balance does not apply keeps every one."""
    from aiida_wyckoffdiff.model.sampling import library_candidates

    request = GenerationRequest(('Li', 'O'), (225,), e_above_hull=0.0, num_samples=8)
    every = library_candidates(adapted_model, request, 225, SamplingConfig(max_atoms=40, plausible=False))
    library_only = SamplingConfig(max_atoms=40, plausible=False, plausible_library=True)
    balanced = library_candidates(adapted_model, request, 225, library_only)
    assert balanced == [c for c in every if composition_plausible(c.composition)] and len(balanced) < len(every)
    assert 'A2B_cF12_225_c_a:Li-O' in {c.label for c in balanced}
    result = generate(adapted_model, request, replace(library_only, num_steps=5), torch.Generator().manual_seed(0))
    assert len(result.samples) == 8 and 'implausible composition' not in result.rejected
    assert all(composition_plausible(s.protostructure.composition) for s in result.samples if s.origin == 'library')
    alloy = GenerationRequest(('Li', 'Mg'), (225,), e_above_hull=0.0)
    alloys = library_candidates(adapted_model, alloy, 225, SamplingConfig(max_atoms=40, plausible=False))
    assert alloys and library_candidates(adapted_model, alloy, 225, library_only) == alloys


def test_a_group_that_cannot_fill_its_samples_hands_them_to_one_that_can(adapted_model) -> None:
    """Within 8 atoms, Fd-3m has one orbit (8a) and so never holds Li and O: its samples go to Pm-3m, N of N."""
    request = GenerationRequest(('Li', 'O'), (227, 221), e_above_hull=0.0, num_samples=6)
    result = generate(adapted_model, request, chains(num_steps=5, max_atoms=8, max_draws=10),
                      torch.Generator().manual_seed(0))
    assert len(result.samples) == 6 and result.num_failed == 0
    assert {s.protostructure.spacegroup for s in result.samples} == {221}
    assert result.num_drawn - len(result.samples) == sum(result.rejected.values())


def _brute_force(scores_fixed, scores_count, multiplicity, elements, accept):  # noqa: ANN001, ANN202
    """Best summed score over every assignment of the variables whose composition is accepted (or ``None``)."""
    import itertools

    choices = [np.flatnonzero(np.isfinite(row)) for row in scores_fixed]
    choices += [np.flatnonzero(np.isfinite(scores_count[n, v])) for n in range(len(multiplicity)) for v in elements]
    best = None
    for assignment in itertools.product(*choices):
        fixed, counts = assignment[: len(multiplicity)], assignment[len(multiplicity):]
        atoms = [0] * len(elements)
        score = sum(scores_fixed[n, c] for n, c in enumerate(fixed))
        for n, c in enumerate(fixed):
            if c:
                atoms[elements.index(c - 1)] += multiplicity[n]
        for (n, v), k in zip(itertools.product(range(len(multiplicity)), elements), counts, strict=True):
            score += scores_count[n, v, k]
            atoms[elements.index(v)] += k * multiplicity[n]
        if sum(atoms) <= 12 and accept(tuple(atoms)) and (best is None or score > best[0]):
            best = (score, tuple(atoms))
    return best


def test_the_constrained_last_step_is_the_best_assignment_that_obeys() -> None:
    """On random scores of four positions, two of them fixed, the dynamic programme finds what enumerating every
    assignment finds: the best summed score whose composition obeys, the free argmax where that obeys already, and
    nothing where nothing does."""
    from aiida_wyckoffdiff.model.constrained import constrained_argmax

    rng = np.random.default_rng(0)
    multiplicity = np.array([1, 2, 2, 4])
    elements = [0, 2]  # vocabulary of three, the middle element not requested
    fixed_rows = np.array([True, True, False, False])

    def balanced(atoms: tuple[int, ...]) -> bool:  # both elements, twice as many of the second
        return atoms[0] > 0 and atoms[1] == 2 * atoms[0]

    solved = 0
    for _ in range(40):
        scores_fixed = np.full((4, 4), -np.inf)
        scores_fixed[:, 0] = rng.normal(size=4)
        scores_fixed[np.ix_(fixed_rows, [1, 3])] = rng.normal(size=(2, 2))
        scores_count = np.full((4, 3, 3), -np.inf)
        scores_count[:, :, 0] = rng.normal(size=(4, 3))
        scores_count[np.ix_(~fixed_rows, elements, [1, 2])] = rng.normal(size=(2, 2, 2))
        expected = _brute_force(scores_fixed, scores_count, multiplicity, elements, balanced)
        draw = constrained_argmax(scores_fixed, scores_count, multiplicity, elements, 12, balanced)
        if expected is None:
            assert draw is None
            continue
        x_fixed, x_count = draw
        rows = np.arange(4)
        found = scores_fixed[rows, x_fixed].sum() + sum(scores_count[n, v, x_count[n, v]] for n in rows for v in elements)
        atoms = [sum(multiplicity[n] for n in rows if x_fixed[n] == v + 1) + (x_count[:, v] * multiplicity).sum()
                 for v in elements]
        assert found == pytest.approx(expected[0]) and balanced(tuple(atoms))
        assert not x_count[:, 1].any()
        solved += 1
        if balanced(tuple(
            sum(multiplicity[n] for n in rows if scores_fixed[n].argmax() == v + 1)
            + (scores_count[:, v].argmax(-1) * multiplicity).sum() for v in elements
        )):
            assert (x_fixed == scores_fixed.argmax(-1)).all() and (x_count[:, elements] == scores_count[:, elements].argmax(-1)).all()
    assert solved > 20


def test_chains_that_break_the_composition_are_completed_not_redrawn(adapted_model) -> None:
    """Under the composition filter, a random model's Li-O chains mostly end unbalanced: with the constrained last
    step every chain run is returned, balanced and complete, and the repaired ones are marked; without it they are
    drawn again."""
    request = GenerationRequest(('Li', 'O'), (225, 194, 62), e_above_hull=0.0, num_samples=12)
    settings = {'num_steps': 5, 'max_atoms': 40, 'max_draws': 60, 'plausible': True}
    redrawn = generate(adapted_model, request, chains(**settings), torch.Generator().manual_seed(0))
    completed = generate(adapted_model, request, chains(**settings, constrained_last_step=True),
                         torch.Generator().manual_seed(0))
    assert redrawn.rejected.get('implausible composition', 0) > 0
    assert len(completed.samples) == 12 and completed.num_drawn == 12 and completed.rejected == {}
    assert any(sample.repaired for sample in completed.samples)
    for sample in completed.samples:
        assert composition_plausible(sample.protostructure.composition)
        assert sample.protostructure.chemsys == 'Li-O' and sample.protostructure.num_atoms <= 40
    assert [s.protostructure.spacegroup for s in completed.samples] == [225, 194, 62] * 4
