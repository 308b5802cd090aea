"""``wyckoffdiff.relax``: relax a batch of structures with one loaded potential in one job."""

from __future__ import annotations

import json

from aiida import orm
from aiida.engine import CalcJobProcessSpec

from ..nodes import CheckpointData, validate_checkpoint
from ..relax import STAGED, RelaxSettings
from .base import WyckoffDiffCalculation

__all__ = ['RELAX_SETTINGS_DEFAULTS', 'STAGED_SETTINGS', 'RelaxCalculation', 'alternative_of', 'candidate_of', 'failed_structures']

_RELAX_SETTING_NAMES = (
    'optimizer', 'fmax', 'steps', 'fix_symmetry', 'free_within', 'prune_above', 'prune_after', 'bfgs_alpha',
    'cell_stiffness',
)
"""The ``RelaxSettings`` fields a job's ``settings`` may set; the others keep their defaults."""

RELAX_SETTINGS_DEFAULTS = {
    **{name: getattr(RelaxSettings(), name) for name in _RELAX_SETTING_NAMES},
    'cores': None, 'workers': None, 'device': 'cpu',
}
"""What ``settings`` may hold, with the values used for keys it leaves out: ``RelaxSettings()``, a free relaxation.
``cores`` None: all the job may run on (the phase-diagram workflow gives each job its share of a machine its jobs
share); ``workers`` None: one per core. The staged protocol is ``STAGED_SETTINGS``."""

STAGED_SETTINGS = {name: getattr(STAGED, name) for name in _RELAX_SETTING_NAMES}
"""``relax.STAGED`` as settings: the phase-diagram workflow's default."""


def validate_settings(value: orm.Dict, _: object) -> str | None:
    """Unknown keys and values ``RelaxSettings`` refuses are named before the job queues."""
    settings = value.get_dict()
    unknown = set(settings) - set(RELAX_SETTINGS_DEFAULTS)
    if unknown:
        return f'unknown relax settings {sorted(unknown)}; known: {sorted(RELAX_SETTINGS_DEFAULTS)}'
    for name in ('cores', 'workers'):
        count = settings.get(name)
        if count is not None and (not isinstance(count, int) or isinstance(count, bool) or count < 1):
            return f'{name} must be a positive integer or None, not {count!r}'
    merged = {**RELAX_SETTINGS_DEFAULTS, **settings}
    try:
        RelaxSettings(**{key: merged[key] for key in RelaxSettings.__dataclass_fields__ if key in merged})
    except (TypeError, ValueError) as exception:
        return f'invalid relax settings: {exception}'
    return None


def failed_structures(structures: dict[str, dict]) -> tuple[dict[str, str], str]:
    """The failed keys of per-structure ``results`` with their reasons, and the first five as one line for a message."""
    failed = {key: result['reason'] for key, result in structures.items() if result.get('reason')}
    return failed, '; '.join(f'{key}: {reason}' for key, reason in list(failed.items())[:5])


def validate_relaxer(value: orm.Str, _: object) -> str | None:
    """A misspelt potential would otherwise be found out only by the job, after queueing on the cluster."""
    from ..potentials import RELAXERS

    return None if value.value in RELAXERS else f'unknown relaxer {value.value!r}; choose one of {", ".join(RELAXERS)}'


def validate_structures(value: dict, _: object) -> str | None:
    return None if value else 'give at least one structure to relax'


def candidate_of(key: str) -> tuple[str, int]:
    """A structure key and its candidate number: ``structure_00012_c2`` -> (``structure_00012``, 2); a key that is
    not an alternative is candidate 0 of itself."""
    head, _, tail = key.rpartition('_c')
    return (head, int(tail)) if head and tail.isdigit() else (key, 0)


def alternative_of(key: str) -> str:
    """The structure key an ``alternatives`` key belongs to: ``structure_00012_c2`` -> ``structure_00012``."""
    head, _ = candidate_of(key)
    return head if head != key else ''


def validate_inputs(inputs: dict, _: object) -> str | None:
    """Every alternative names a structure of the job (``<key>_c<k>``), so none is silently left out."""
    structures = inputs.get('structures', {})
    orphans = sorted(key for key in inputs.get('alternatives', {}) if alternative_of(key) not in structures)
    if orphans:
        return f'alternatives {orphans} belong to no structure: name them <structure key>_c<k>'
    return None


class RelaxCalculation(WyckoffDiffCalculation):
    """Run ``wyckoffdiff relax`` on every input structure; one relaxed StructureData per success.

    A structure that fails (exploding energy, collapsed atoms, an element the potential lacks) is
    reported in ``results`` and gives exit code 710 with all other structures attached; only a job
    that produced nothing usable fails outright. The command saves each structure as it finishes, so
    a job killed midway ends with 420 and its finished structures attached: ``RelaxBaseWorkChain``
    relaxes only the rest.
    """

    CACHE_VERSION = 3
    """2: the command saves structures as they finish and marks the results ``complete``. 3: the results are JSON
    Lines appended per structure; the staged protocol, pruning and worker processes."""

    FILENAME_RESULTS = 'results.jsonl'

    STRUCTURES_FOLDER = 'structures'
    ALTERNATIVES_FOLDER = 'alternatives'
    FILENAME_ALTERNATIVES = 'alternatives.json'
    TRAJECTORY_FOLDER = 'trajectories'
    FILENAME_CHECKPOINT = 'potential.ckpt'

    @classmethod
    def define(cls, spec: CalcJobProcessSpec) -> None:
        super().define(spec)
        spec.inputs['metadata']['options']['parser_name'].default = 'wyckoffdiff.relax'
        spec.input_namespace('structures', valid_type=orm.StructureData, dynamic=True, validator=validate_structures,
                             help='The structures to relax; output keys repeat these keys.')
        spec.input_namespace('alternatives', valid_type=orm.StructureData, dynamic=True, required=False,
                             help='Other candidates of a structure, keyed <structure key>_c<k>: all are pre-relaxed '
                                  '(30 FixSymmetry steps) and the lowest is relaxed under the structure\'s key.')
        spec.inputs.validator = validate_inputs
        spec.input('relaxer', valid_type=orm.Str, serializer=orm.to_aiida_type, default=lambda: orm.Str('chgnet'),
                   validator=validate_relaxer, help='Interatomic potential: mattersim, chgnet or sevenn.')
        spec.input('checkpoint', valid_type=CheckpointData, validator=validate_checkpoint, required=False,
                   help='Weights of the potential; omitted: the ones its package ships (chgnet, sevenn).')
        spec.input('settings', valid_type=orm.Dict, serializer=orm.to_aiida_type, required=False,
                   validator=validate_settings, help=f'Optimizer settings; defaults {RELAX_SETTINGS_DEFAULTS}.')
        spec.output_namespace('relaxed', valid_type=orm.StructureData, dynamic=True, help='Relaxed structures by input key.')
        spec.output('results', valid_type=orm.Dict,
                    help='Per input key: converged, steps, energy (eV), energy_per_atom, space groups, reason; and the potential.')
        spec.output('trajectories', valid_type=orm.FolderData, required=False, help='One ASE trajectory per structure.')
        spec.exit_code(410, 'ERROR_ALL_STRUCTURES_FAILED', message='No structure could be relaxed: {reasons}')
        spec.exit_code(
            420, 'ERROR_INTERRUPTED',
            message='The job stopped after {done} of {total} structures (killed, out of wall time or memory?); '
                    'the finished ones are attached. Last lines of the scheduler\'s and the command\'s stderr: {stderr}',
        )
        spec.exit_code(710, 'WARNING_SOME_STRUCTURES_FAILED', message='{failed} of {total} structures failed: {reasons}')

    def prepare_for_submission(self, folder):  # noqa: ANN001, ANN201 - the signature is aiida-core's
        folder.get_subfolder(self.STRUCTURES_FOLDER, create=True)
        files = []
        for key, structure in sorted(self.inputs.structures.items()):
            name = f'{self.STRUCTURES_FOLDER}/{key}.json'
            with folder.open(name, 'w') as handle:
                json.dump(structure.get_pymatgen_structure().as_dict(), handle)
            files.append(name)
        alternatives: dict[str, list[str]] = {}
        for key, structure in sorted(self.inputs.get('alternatives', {}).items()):
            name = f'{self.ALTERNATIVES_FOLDER}/{key}.json'
            folder.get_subfolder(self.ALTERNATIVES_FOLDER, create=True)
            with folder.open(name, 'w') as handle:
                json.dump(structure.get_pymatgen_structure().as_dict(), handle)
            alternatives.setdefault(f'{self.STRUCTURES_FOLDER}/{alternative_of(key)}.json', []).append(name)
        settings = {**RELAX_SETTINGS_DEFAULTS, **(self.inputs.settings.get_dict() if 'settings' in self.inputs else {})}
        params = ['relax', *files, '--relaxer', self.inputs.relaxer.value, '--optimizer', settings['optimizer']]
        params += ['--fmax', str(settings['fmax']), '--steps', str(settings['steps']), '--device', settings['device']]
        params += ['--fix-symmetry' if settings['fix_symmetry'] else '--free', '--trajectory-dir', self.TRAJECTORY_FOLDER]
        params += ['--prune-after', str(settings['prune_after']), '--bfgs-alpha', str(settings['bfgs_alpha'])]
        if alternatives:
            with folder.open(self.FILENAME_ALTERNATIVES, 'w') as handle:
                json.dump(alternatives, handle)
            params += ['--alternatives', self.FILENAME_ALTERNATIVES]
        params += [item for key in ('free_within', 'prune_above', 'cell_stiffness', 'cores', 'workers')
                   if settings[key] is not None
                   for item in (f'--{key.replace("_", "-")}', str(settings[key]))]
        copies = []
        if 'checkpoint' in self.inputs:
            params += ['--checkpoint', self.FILENAME_CHECKPOINT, '--checkpoint-sha256', self.inputs.checkpoint.sha256]
            copies.append(self.checkpoint_copy(self.inputs.checkpoint, self.FILENAME_CHECKPOINT))
        calcinfo = self.make_calcinfo(params, copies)
        calcinfo.retrieve_list.append(self.TRAJECTORY_FOLDER)
        return calcinfo
