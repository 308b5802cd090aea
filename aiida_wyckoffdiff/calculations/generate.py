"""``wyckoffdiff.generate``: sample protostructures with a WyckoffDiff-Adaptor checkpoint on any Computer."""

from __future__ import annotations

from aiida import orm
from aiida.engine import CalcJobProcessSpec

from ..model.config import GUIDABLE_CONDITIONS, SamplingConfig
from ..nodes import CheckpointData, validate_checkpoint
from .base import WyckoffDiffCalculation

__all__ = ['GenerateCalculation', 'validate_chemsys', 'validate_guided', 'validate_positive', 'validate_spacegroups']


def validate_chemsys(value: orm.Str, _: object) -> str | None:
    """Elements joined by '-', each a real element: caught before a job is ever submitted."""
    from pymatgen.core.periodic_table import Element

    elements = value.value.split('-')
    unknown = [element for element in elements if not Element.is_valid_symbol(element)]
    if unknown:
        return f'chemical system {value.value!r}: unknown element(s) {", ".join(map(repr, unknown))}'
    if len(set(elements)) != len(elements):
        return f'chemical system {value.value!r} names an element twice'
    return None


def validate_spacegroups(value: orm.List, _: object) -> str | None:
    bad = [number for number in value.get_list() if not isinstance(number, int) or not 1 <= number <= 230]
    if bad or not value.get_list():
        return f'space groups must be a non-empty list of numbers from 1 to 230; these are not: {bad}'
    return None


def validate_guided(value: orm.List, _: object) -> str | None:
    """Only condition names the model has may be guided."""
    unknown = [name for name in value.get_list() if name not in GUIDABLE_CONDITIONS]
    if unknown:
        return f'cannot guide on {unknown}: choose among {", ".join(GUIDABLE_CONDITIONS)}'
    return None


def validate_positive(value: orm.Int, port: object) -> str | None:
    """Counts (samples, steps, batch sizes) below 1 would make an empty or endless job: refused at launch."""
    return None if value.value > 0 else f'{getattr(port, "name", "the value")} must be positive, not {value.value}'


def validate_share(value: orm.Float, port: object) -> str | None:
    """A share of the samples lies between 0 and 1."""
    return None if 0 <= value.value <= 1 else f'{getattr(port, "name", "the value")} is a share, from 0 to 1, not {value.value}'


def validate_weight(value: orm.Float, port: object) -> str | None:
    """A guidance weight is 0 (off) or more."""
    name = getattr(port, 'name', 'the value')
    return None if value.value >= 0 else f'{name} is a weight, 0 or more, not {value.value}'


class GenerateCalculation(WyckoffDiffCalculation):
    """Run ``wyckoffdiff generate`` with the checkpoint node's weights; outputs the protostructures."""

    @classmethod
    def define(cls, spec: CalcJobProcessSpec) -> None:
        super().define(spec)
        spec.inputs['metadata']['options']['parser_name'].default = 'wyckoffdiff.generate'
        spec.input('checkpoint', valid_type=CheckpointData, validator=validate_checkpoint, help='The model weights (stored once per sha256).')
        spec.input('chemsys', valid_type=orm.Str, serializer=orm.to_aiida_type, validator=validate_chemsys,
                   help='Chemical system, e.g. "Li-O"; every sample contains all of its elements and no other.')
        spec.input('spacegroups', valid_type=orm.List, serializer=orm.to_aiida_type, validator=validate_spacegroups,
                   help='Space groups to sample; num_samples are drawn for each.')
        spec.input('num_samples', valid_type=orm.Int, serializer=orm.to_aiida_type, validator=validate_positive,
                   help='Protostructures per space group.')
        spec.input('e_above_hull', valid_type=orm.Float, serializer=orm.to_aiida_type, required=False,
                   help='Target energy above hull in eV/atom; omitted: unconditioned.')
        spec.input('guidance', valid_type=orm.Float, serializer=orm.to_aiida_type,
                   default=lambda: orm.Float(SamplingConfig.guidance_scale), help='Classifier-free guidance scale.')
        spec.input('guided', valid_type=orm.List, serializer=orm.to_aiida_type, validator=validate_guided,
                   default=lambda: orm.List(list(SamplingConfig.guided)),
                   help='Conditions the guidance contrasts; the others are kept in both passes.')
        spec.input('plausible', valid_type=orm.Bool, serializer=orm.to_aiida_type,
                   default=lambda: orm.Bool(SamplingConfig.plausible),
                   help='In ionic systems, keep to compositions that common oxidation states balance (on by default; '
                        'off for metal-rich suboxides).')
        spec.input('known_prototypes', valid_type=orm.Float, serializer=orm.to_aiida_type,
                   default=lambda: orm.Float(SamplingConfig.known_prototypes), validator=validate_share,
                   help='Share of each space group\'s samples chosen among training crystals\' Wyckoff arrangements '
                   'by the model\'s score.')
        spec.input('energy_guidance', valid_type=orm.Float, serializer=orm.to_aiida_type,
                   default=lambda: orm.Float(SamplingConfig.energy_guidance), validator=validate_weight,
                   help='Weight of a fine-tuned checkpoint\'s energy head in choosing known arrangements towards '
                   'e_above_hull (a checkpoint without one ignores it).')
        spec.input('energy_screen', valid_type=orm.Int, serializer=orm.to_aiida_type,
                   default=lambda: orm.Int(SamplingConfig.energy_screen), validator=validate_positive,
                   help='Draw this many times the samples and keep those a fine-tuned checkpoint\'s energy head '
                   'predicts closest to e_above_hull (1, or a checkpoint without a head: no screen).')
        spec.input('steps', valid_type=orm.Int, serializer=orm.to_aiida_type, default=lambda: orm.Int(100),
                   validator=validate_positive, help='Strided reverse diffusion steps.')
        spec.input('seed', valid_type=orm.Int, serializer=orm.to_aiida_type, default=lambda: orm.Int(0))
        spec.input('exclude', valid_type=orm.List, serializer=orm.to_aiida_type, required=False,
                   help='Protostructure labels not to return (what earlier rounds relaxed): every sample is new.')
        spec.output('samples', valid_type=orm.Dict, help='The generate JSON: samples with their conditions, and meta.')
        spec.output('protostructures', valid_type=orm.List, help='Canonical labels of the samples, in order.')
        spec.exit_code(410, 'ERROR_NO_SAMPLES', message='None of the requested samples came out: {detail}')

    FILENAME_CHECKPOINT = 'model.ckpt'
    FILENAME_EXCLUDE = 'exclude.txt'

    def prepare_for_submission(self, folder):  # noqa: ANN001, ANN201 - the signature is aiida-core's
        checkpoint = self.inputs.checkpoint
        params = ['generate', '--checkpoint', self.FILENAME_CHECKPOINT, '--checkpoint-sha256', checkpoint.sha256]
        params += ['--chemsys', self.inputs.chemsys.value]
        for number in self.inputs.spacegroups.get_list():
            params += ['--spacegroup', str(number)]

        spacegroups = self.inputs.spacegroups.get_list()
        total = self.inputs.num_samples.value * len(spacegroups)  # the command cycles the groups over its total
        params += ['--num-samples', str(total), '--guidance', str(self.inputs.guidance.value)]
        params += ['--guided', ','.join(self.inputs.guided.get_list())]
        params += ['--plausible' if self.inputs.plausible.value else '--any-composition']
        params += ['--known-prototypes', str(self.inputs.known_prototypes.value)]
        params += ['--energy-guidance', str(self.inputs.energy_guidance.value)]
        params += ['--energy-screen', str(self.inputs.energy_screen.value)]
        params += ['--steps', str(self.inputs.steps.value), '--seed', str(self.inputs.seed.value)]
        if 'e_above_hull' in self.inputs:
            params += ['--e-above-hull', str(self.inputs.e_above_hull.value)]
        if 'exclude' in self.inputs:
            with folder.open(self.FILENAME_EXCLUDE, 'w') as handle:
                handle.write(''.join(f'{label}\n' for label in self.inputs.exclude.get_list()))
            params += ['--exclude', self.FILENAME_EXCLUDE]
        return self.make_calcinfo(params, [self.checkpoint_copy(checkpoint, self.FILENAME_CHECKPOINT)])
