"""``PhaseDiagramWorkChain.get_builder_from_protocol``: every shipped protocol, overrides, and what it refuses."""

from __future__ import annotations

import pytest
from aiida import orm

from aiida_wyckoffdiff.calculations.relax import STAGED_SETTINGS
from aiida_wyckoffdiff.codes import get_or_create_code
from aiida_wyckoffdiff.exceptions import ProtocolError
from aiida_wyckoffdiff.launch import phase_diagram_builder
from aiida_wyckoffdiff.model.config import SamplingConfig
from aiida_wyckoffdiff.workchains.phase_diagram import PhaseDiagramWorkChain

pytestmark = pytest.mark.usefixtures('aiida_profile_clean')


@pytest.fixture
def code(aiida_localhost) -> orm.InstalledCode:
    return get_or_create_code(aiida_localhost)


@pytest.mark.parametrize('protocol', list(PhaseDiagramWorkChain.get_available_protocols()))
def test_every_protocol_gives_a_builder_with_all_its_inputs(code, protocol) -> None:
    inputs = PhaseDiagramWorkChain.get_protocol_inputs(protocol)
    builder = PhaseDiagramWorkChain.get_builder_from_protocol(code, 'Li-O', protocol)
    assert builder.chemsys.value == 'Li-O'
    assert builder.num_samples.value == inputs['num_samples']
    assert builder.generate.guided.get_list() == inputs['generate']['guided']
    assert builder.relax.settings.get_dict() == inputs['relax']['settings']
    assert builder.relax.relaxer.value == 'chgnet'
    assert builder.generate.code.pk == builder.relax.code.pk == code.pk
    assert builder.generate.checkpoint.kind == 'wyckoffdiff'
    assert 'spacegroups' not in builder  # chosen by the work chain for the chemical system (spacegroup_choice)
    assert 'structures_per_job' not in builder  # chosen by the work chain from where the relax jobs run


def test_protocols_scale_the_samples_and_keep_the_measured_defaults() -> None:
    """``fast`` is the 40-sample scan of ``make run``, ``paper`` the paper's 64 per group, all with the measured
    sampling (docs/discovery.md) and the staged relaxation (docs/relaxation.md)."""
    samples = {name: PhaseDiagramWorkChain.get_protocol_inputs(name)['num_samples']
               for name in PhaseDiagramWorkChain.get_available_protocols()}
    assert samples == {'fast': 2, 'balanced': 16, 'paper': 64, 'discovery': 32}
    assert PhaseDiagramWorkChain.get_default_protocol() == 'fast'
    for name in samples:
        inputs = PhaseDiagramWorkChain.get_protocol_inputs(name)
        assert inputs['guidance'] == SamplingConfig.guidance_scale
        assert tuple(inputs['generate']['guided']) == SamplingConfig.guided
        assert inputs['generate']['known_prototypes'] == SamplingConfig.known_prototypes
        assert inputs['relax']['settings'] == STAGED_SETTINGS


def test_only_the_discovery_protocol_adds_the_baselines_as_sources(code) -> None:
    """``discovery`` spends the ``paper`` budget on the model and random protostructures alike and adds substitution;
    the other protocols are the model alone, as in the paper."""
    for name in PhaseDiagramWorkChain.get_available_protocols():
        builder = PhaseDiagramWorkChain.get_builder_from_protocol(code, 'Li-O', name)
        sources = (builder.random_samples.value, builder.substitution_samples.value)
        if name == 'discovery':
            paper = PhaseDiagramWorkChain.get_protocol_inputs('paper')['num_samples']
            assert builder.num_samples.value + builder.random_samples.value == paper
            assert builder.substitution_samples.value > 0
        else:
            assert sources == (0, 0), name


def test_overrides_change_single_inputs_nested_ones_merged(code) -> None:
    builder = PhaseDiagramWorkChain.get_builder_from_protocol(
        code.full_label, 'Ti-O', 'paper', {'num_samples': 8, 'relax': {'settings': {'prune_above': None}}}
    )
    assert builder.num_samples.value == 8
    settings = builder.relax.settings.get_dict()
    assert settings['prune_above'] is None and settings['fix_symmetry'] is True and settings['steps'] == 150


def test_phase_diagram_builder_keywords_are_overrides(code) -> None:
    builder = phase_diagram_builder('Li-O', code=code.full_label, protocol='balanced', spacegroups=[225],
                                    relax_settings={'fix_symmetry': False, 'prune_above': None})
    assert builder.num_samples.value == 16 and builder.spacegroups.get_list() == [225]
    assert builder.relax.settings['fix_symmetry'] is False and builder.relax.settings['prune_above'] is None


@pytest.mark.parametrize(
    ('protocol', 'overrides', 'message'),
    [
        ('precise', None, "unknown protocol 'precise' of PhaseDiagramWorkChain; choose one of fast, balanced, paper, discovery"),
        ('fast', {'num_sample': 3}, "PhaseDiagramWorkChain has no input 'num_sample'; valid: .*num_samples"),
        ('fast', {'relax': {'setting': {}}}, "PhaseDiagramWorkChain.relax has no input 'setting'; valid: .*settings"),
        ('fast', {'relax': {'settings': {'fmaxx': 0.1}}}, r"unknown relax settings \['fmaxx'\]"),
        ('fast', {'num_samples': 0}, 'num_samples must be positive, not 0'),
    ],
)
def test_bad_protocol_or_override_is_refused_naming_the_valid_ones(code, protocol, overrides, message) -> None:
    with pytest.raises((ProtocolError, ValueError), match=message):
        PhaseDiagramWorkChain.get_builder_from_protocol(code, 'Li-O', protocol, overrides)


def test_protocols_realize_from_templates_and_refuse_an_unknown_method(code) -> None:
    for name in PhaseDiagramWorkChain.get_available_protocols():
        assert PhaseDiagramWorkChain.get_builder_from_protocol(code, 'Li-O', name).realize_method.value == 'template'
    builder = PhaseDiagramWorkChain.get_builder_from_protocol(code, 'Li-O', 'fast', {'realize_method': 'pyxtal'})
    assert builder.realize_method.value == 'pyxtal'
    with pytest.raises(ValueError, match='realize_method must be one of template, pyxtal'):
        PhaseDiagramWorkChain.get_builder_from_protocol(code, 'Li-O', 'fast', {'realize_method': 'dice'})
