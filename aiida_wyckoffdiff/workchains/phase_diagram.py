"""``wyckoffdiff.phase_diagram``: generate -> realize -> relax -> hull for one chemical system.

The outline reads like the pipeline. Generation is batched over space groups and relaxation over
structures, so the number of processes grows with the number of batches, not of structures. The
elemental ground states are relaxed in the same jobs as the generated structures, so every
formation energy is computed against references from the same potential and the same settings.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aiida import orm
from aiida.engine import WorkChain, append_, calcfunction, while_

from ..calculations.generate import (
    GenerateCalculation,
    validate_chemsys,
    validate_positive,
    validate_spacegroups,
)
from ..calculations.realize import realize_protostructures, template_nodes
from ..calculations.sources import random_protostructures_source, substitution_source
from ..calculations.spacegroups import choose_spacegroups, validate_spacegroup_choice
from ..calculations.relax import STAGED_SETTINGS, RelaxCalculation, alternative_of
from ..model.config import SamplingConfig
from ..templates import REALIZATION_METHODS, shipped_templates
from .protocols import ProtocolMixin
from .relax import RelaxBaseWorkChain

__all__ = ['PhaseDiagramWorkChain', 'assemble_hull', 'elemental_reference_structures']

REFERENCE_PREFIX = 'reference_'
RELAX_JOB_GIB = 3.5
"""Memory one relax job is counted at: a 64-structure CHGNet job with two workers peaked at 3.1 GiB in all
(docs/relaxation.md), the command's process with the model and its structures plus each worker's model and the one
structure it relaxes; it does not grow with the structures per job, since each worker holds one at a time. The
one-worker default peaked at 1.9 GiB on the same 64, so the count is on the safe side."""
WORKERS_PER_JOB = 2
"""Workers (one per core) of a relax job on a machine the jobs share: the job size ``RELAX_JOB_GIB`` was measured at."""
CLUSTER_STRUCTURES_PER_JOB = 64
"""Structures per relax job where a scheduler gives each job its own cores: jobs run side by side, so many small ones."""


RANDOM_LIST = 'random'
"""Name of the random source's label list among the realize step's inputs (the model's are ``batch_N``)."""


def validate_non_negative(value: orm.Int, _: object) -> str | None:
    return None if value.value >= 0 else f'must be zero or positive, not {value.value}'


def candidate_sources(realize_report: list[dict], substitution_report: list[dict]) -> dict[str, str]:
    """Output key -> what proposed it: ``model``, ``random``, both (``model,random``) or ``substitution``."""
    sources = {}
    for entry in realize_report:
        if entry.get('output'):
            kinds = {RANDOM_LIST if name == RANDOM_LIST else 'model' for name in entry['sources']}
            sources[entry['output']] = ','.join(sorted(kinds))
    sources.update({entry['output']: 'substitution' for entry in substitution_report})
    return sources


def validate_samples_per_spacegroup(value: orm.Dict, _: object) -> str | None:
    shares = value.get_dict()
    bad = {key: count for key, count in shares.items() if not key.isdigit() or not 1 <= int(key) <= 230
           or isinstance(count, bool) or not isinstance(count, int) or count < 0}
    if bad or not any(shares.values()):
        return ('samples_per_spacegroup maps space groups ("1" to "230") to whole numbers of samples, at least one '
                f'of them positive; these are not: {bad or shares}')
    return None


def validate_realize_method(value: orm.Str, _: object) -> str | None:
    if value.value not in REALIZATION_METHODS:
        return f'realize_method must be one of {", ".join(REALIZATION_METHODS)}, not {value.value!r}'
    return None


def validate_memory(value: orm.Float, _: object) -> str | None:
    return None if value.value >= RELAX_JOB_GIB else f'relax_memory_gib must hold one relax job ({RELAX_JOB_GIB} GiB)'


def default_relax_memory_gib() -> float:
    """What relax jobs may use together by default: this machine's memory (where direct-scheduler jobs run)."""
    import psutil

    return psutil.virtual_memory().total / 2**30


@calcfunction
def elemental_reference_structures(chemsys: orm.Str) -> dict[str, orm.StructureData]:
    """The reference structure of each element (``reference_<El>``): the Materials Project ground state shipped with
    the package, or the library's standard state where the MP data has none; the extra ``source`` says which."""
    from ..references import elemental_references

    outputs = {}
    for reference in elemental_references(tuple(chemsys.value.split('-'))):
        structure = orm.StructureData(pymatgen=reference.structure)
        structure.base.extras.set('source', reference.source)
        outputs[f'{REFERENCE_PREFIX}{reference.element}'] = structure
    return outputs


@calcfunction
def assemble_hull(
    chemsys: orm.Str,
    realize_report: orm.List,
    hull_tolerance: orm.Float,
    substitution_report: orm.List | None = None,
    **relaxation: orm.Data,
) -> dict[str, orm.Data]:
    """Formation energies, e_above_hull, the table, the plots and CIFs from the relax jobs' outputs.

    ``relaxation`` holds ``results_N`` (each relax job's results) and ``relaxed_KEY`` (each relaxed structure).
    Outputs ``table`` (a row per generated structure; rows that relaxed to the same structure name each other in
    ``duplicate_of``/``duplicates``), ``hull_keys`` (keys of the distinct structures within ``hull_tolerance``
    eV/atom of the reference hull), ``elemental_energies`` and ``elemental_sources`` (where each element's reference
    structure came from: an MP id or the library's standard state), plots as files and ``cifs``.
    """
    import tempfile
    from pathlib import Path

    from ..hull import elemental_energies_from, hull_rows, merge_duplicates
    from ..plots import write_report
    from ..potentials import RELAXERS
    from ..references import elemental_references
    from ..relax import RelaxOutcome

    results = {key: value for name, node in relaxation.items() if name.startswith('results_')
               for key, value in node['structures'].items()}
    potential = next(node['potential'] for name, node in relaxation.items() if name.startswith('results_'))
    structures = {name.removeprefix('relaxed_'): node.get_pymatgen_structure() for name, node in relaxation.items()
                  if name.startswith('relaxed_')}
    outcomes = {key: RelaxOutcome.from_dict(value) for key, value in results.items()}
    for key, structure in structures.items():
        outcomes[key].structure = structure
    elements = tuple(chemsys.value.split('-'))
    references = elemental_references(elements)
    elemental = elemental_energies_from(references, [outcomes.get(f'{REFERENCE_PREFIX}{r.element}') for r in references], potential)
    elemental_sources = {reference.element: reference.source for reference in references}
    substituted = substitution_report.get_list() if substitution_report is not None else []
    requested = {entry['output']: entry['label'] for entry in [*realize_report.get_list(), *substituted]
                 if entry.get('output')}
    sources = candidate_sources(realize_report.get_list(), substituted)
    keys = sorted(key for key in outcomes if not key.startswith(REFERENCE_PREFIX))
    rows = hull_rows([outcomes[key] for key in keys], elemental, [requested.get(key) for key in keys],
                     apply_mp2020=not RELAXERS[potential].includes_mp2020)
    for key, row in zip(keys, rows, strict=True):
        row.source = sources.get(key)
    merge_duplicates(rows, [outcomes[key].structure for key in keys], keys)
    outputs: dict[str, orm.Data] = {}
    with tempfile.TemporaryDirectory() as folder:
        for path in write_report(rows, elemental, Path(folder), sources=elemental_sources):
            if path.suffix in ('.png', '.html'):
                outputs[path.stem.replace('-', '_') + path.suffix.replace('.', '_')] = orm.SinglefileData(path)
        cifs = orm.FolderData()
        for key in keys:
            if key in structures:
                cifs.base.repository.put_object_from_bytes(structures[key].to(fmt='cif').encode(), f'{key}.cif')
        outputs['cifs'] = cifs
    table = [{'key': key, **row.as_dict()} for key, row in zip(keys, rows, strict=True)]
    outputs['table'] = orm.List(table)
    outputs['elemental_energies'] = orm.Dict(elemental)
    outputs['elemental_sources'] = orm.Dict(elemental_sources)
    tolerance = hull_tolerance.value
    outputs['hull_keys'] = orm.List([row['key'] for row in table if row['e_above_hull'] is not None
                                     and row['e_above_hull'] <= tolerance and row['duplicate_of'] is None])
    return outputs


def _relaxed_of(job: orm.WorkChainNode) -> dict[str, orm.StructureData]:
    """The relaxed structures a relax work chain attached, by input key (none if every structure failed)."""
    return dict(job.outputs.relaxed.items()) if 'relaxed' in job.outputs else {}


def _chunks(items: list, size: int) -> list[list]:
    return [items[start:start + size] for start in range(0, len(items), size)]


def balanced_jobs(sizes: dict[str, int], per_job: int) -> list[list[str]]:
    """Keys in as few jobs of at most ``per_job`` as hold them, each largest cell to the job with the fewest atoms so
    far that has room, so that the jobs of a wave run at once end together."""
    count = -(-len(sizes) // per_job)
    jobs: list[list[str]] = [[] for _ in range(count)]
    atoms = [0] * count
    for key in sorted(sizes, key=lambda key: (-sizes[key], key)):
        job = min((j for j in range(count) if len(jobs[j]) < per_job), key=lambda j: atoms[j])
        jobs[job].append(key)
        atoms[job] += sizes[key]
    return [sorted(job) for job in jobs]


def default_structures_per_job(structures: int, cores: int | None) -> int:
    """Where the jobs share this machine's ``cores``, so many structures that the jobs fill those cores in one wave,
    ``WORKERS_PER_JOB`` cores each: a job's workers take the structures from one queue, so no core waits for another
    job of its wave to end (jobs of 64 left 6.5 % of the cores idle, docs/relaxation.md). On a cluster, 64."""
    if cores is None:
        return CLUSTER_STRUCTURES_PER_JOB
    jobs = -(-cores // WORKERS_PER_JOB)
    return max(1, -(-structures // jobs))


def relax_layout(jobs: int, memory_gib: float, cores: int | None) -> tuple[int, int | None]:
    """How many relax jobs run at once, and the cores each may use: as many as the memory holds, and where the jobs
    share this machine's ``cores``, no more than those, each on its share. Six two-thread jobs on 2 cores took 5x the
    time of one (torch threads spin when they outnumber the cores); two one-thread jobs took 0.7x (docs/relaxation.md)."""
    at_once = max(1, min(jobs, int(memory_gib // RELAX_JOB_GIB)))
    if cores is None:
        return at_once, None
    at_once = min(at_once, cores)
    return at_once, cores // at_once


def shared_cores(code: orm.AbstractCode) -> int | None:
    """The cores the relax jobs share: this machine's where they run on it as plain processes (a direct scheduler
    over a local transport); None where a scheduler gives each job its own."""
    from ..relax import available_cores

    computer = getattr(code, 'computer', None)
    if computer is None or computer.scheduler_type != 'core.direct' or computer.transport_type != 'core.local':
        return None
    return available_cores()


def load_code(code: orm.AbstractCode | str) -> orm.AbstractCode:
    """A code node, or the one a label names, with the set-up command to run when it is not in the profile."""
    from aiida.common.exceptions import MultipleObjectsError, NotExistent

    from ..exceptions import WyckoffDiffError

    if isinstance(code, orm.AbstractCode):
        return code
    try:
        return orm.load_code(code)
    except (NotExistent, MultipleObjectsError) as exception:
        raise WyckoffDiffError(f'no code {code!r} in this profile ({exception}): run `wyckoffdiff setup` first') from None


class PhaseDiagramWorkChain(ProtocolMixin, WorkChain):
    """Scan space groups of a chemical system with the model and place what survives on the convex hull."""

    _protocol_file = 'phase_diagram'

    @classmethod
    def get_builder_from_protocol(
        cls,
        code: orm.AbstractCode | str,
        chemsys: str,
        protocol: str | None = None,
        overrides: dict[str, Any] | None = None,
        *,
        model_checkpoint: str | Path | None = None,
        relax_checkpoint: str | Path | None = None,
    ) -> Any:
        """A builder filled from ``protocols/phase_diagram.yaml``: ``fast`` (default), ``balanced``, ``discovery`` (space
        groups chosen for the chemistry) or ``paper`` (the paper's fixed 20 most frequent groups).

        :param code: the ``wyckoffdiff`` code (or its label), for the generate and the relax jobs.
        :param overrides: inputs over the protocol's, nested as the ports are, e.g.
            ``{'num_samples': 8, 'relax': {'settings': {'prune_above': None}}}``; a key that is no input is refused.
        :param model_checkpoint: WyckoffDiff weights; default the checkpoint shipped with the package.
        :param relax_checkpoint: weights of the potential; default those its package ships (CHGNet, SevenNet).
        """
        from ..model.checkpoint import shipped_checkpoint_path
        from ..nodes import CheckpointData

        inputs = cls.get_protocol_inputs(protocol, overrides)
        code = load_code(code)
        builder = cls.get_builder()
        builder.chemsys = chemsys
        builder._update(inputs)
        builder.generate.code = code
        builder.generate.checkpoint = CheckpointData.get_or_create(model_checkpoint or shipped_checkpoint_path(), kind='wyckoffdiff')
        builder.relax.code = code
        if relax_checkpoint:
            builder.relax.checkpoint = CheckpointData.get_or_create(relax_checkpoint, kind=builder.relax.relaxer.value)
        return builder

    @classmethod
    def define(cls, spec) -> None:  # noqa: ANN001 - aiida-core's spec type
        super().define(spec)
        spec.input('chemsys', valid_type=orm.Str, serializer=orm.to_aiida_type, validator=validate_chemsys,
                   help='Chemical system, e.g. "Li-O".')
        spec.input('spacegroups', valid_type=orm.List, serializer=orm.to_aiida_type, required=False,
                   validator=validate_spacegroups,
                   help='Space groups to scan; default: spacegroup_count groups chosen by spacegroup_choice.')
        spec.input('spacegroup_choice', valid_type=orm.Str, serializer=orm.to_aiida_type,
                   default=lambda: orm.Str('chemistry'), validator=validate_spacegroup_choice,
                   help='chemistry: the groups of training crystals of as many, similar elements (docs/spacegroups.md); '
                        "top20: the most frequent groups of the training data, the paper's scan.")
        spec.input('spacegroup_count', valid_type=orm.Int, serializer=orm.to_aiida_type, default=lambda: orm.Int(20),
                   validator=validate_positive, help='Space groups to choose where spacegroups is not given.')
        spec.input('num_samples', valid_type=orm.Int, serializer=orm.to_aiida_type, default=lambda: orm.Int(4), validator=validate_positive,
                   help='Protostructures per space group.')
        spec.input('samples_per_spacegroup', valid_type=orm.Dict, required=False,
                   validator=validate_samples_per_spacegroup,
                   help='Protostructures of each scanned group (group number as a string), instead of num_samples for '
                        'those it names: a rounds run shares its samples by earlier rounds (wyckoffdiff.allocate_spacegroups).')
        spec.input('e_above_hull', valid_type=orm.Float, serializer=orm.to_aiida_type, default=lambda: orm.Float(0.0),
                   help='Target energy above hull (eV/atom) the model is conditioned on.')
        spec.input('guidance', valid_type=orm.Float, serializer=orm.to_aiida_type,
                   default=lambda: orm.Float(SamplingConfig.guidance_scale))
        spec.input('steps', valid_type=orm.Int, serializer=orm.to_aiida_type, default=lambda: orm.Int(100), validator=validate_positive)
        spec.input('seed', valid_type=orm.Int, serializer=orm.to_aiida_type, default=lambda: orm.Int(0))
        spec.input('realize_attempts', valid_type=orm.Int, serializer=orm.to_aiida_type, default=lambda: orm.Int(100), validator=validate_positive)
        spec.input('random_samples', valid_type=orm.Int, serializer=orm.to_aiida_type, default=lambda: orm.Int(0),
                   validator=validate_non_negative,
                   help='Random protostructures per space group (the training-split prior) beside the model\'s.')
        spec.input('substitution_samples', valid_type=orm.Int, serializer=orm.to_aiida_type, default=lambda: orm.Int(0),
                   validator=validate_non_negative,
                   help='Structures by ionic substitution into training-split crystals, at most this many.')
        spec.input('realize_method', valid_type=orm.Str, serializer=orm.to_aiida_type, default=lambda: orm.Str('template'),
                   validator=validate_realize_method,
                   help='template: the geometry of a training crystal of the same prototype where one exists, PyXtal '
                        'for the rest; pyxtal: always a random PyXtal draw.')
        spec.input('candidates', valid_type=orm.Int, serializer=orm.to_aiida_type, default=lambda: orm.Int(1),
                   validator=validate_positive,
                   help='PyXtal realizations per protostructure; the relax job keeps the lowest after a 30-step '
                        'pre-relaxation. With realize_method template, a protostructure with a template is realized '
                        'once, from the most similar.')
        spec.input('hull_tolerance', valid_type=orm.Float, serializer=orm.to_aiida_type, default=lambda: orm.Float(0.1),
                   help='Structures within this many eV/atom of the reference hull are hull structures.')
        spec.input('spacegroups_per_job', valid_type=orm.Int, serializer=orm.to_aiida_type, default=lambda: orm.Int(20), validator=validate_positive)
        spec.input('structures_per_job', valid_type=orm.Int, serializer=orm.to_aiida_type, required=False,
                   validator=validate_positive,
                   help='Structures per relax job. Default: where the jobs share this machine, one wave of jobs of '
                        f'{WORKERS_PER_JOB} cores each; on a cluster {CLUSTER_STRUCTURES_PER_JOB}.')
        spec.input('relax_memory_gib', valid_type=orm.Float, serializer=orm.to_aiida_type, required=False,
                   validator=validate_memory,
                   help=f'GiB the relax jobs may use together, {RELAX_JOB_GIB} GiB each; default: this machine\'s memory.')
        spec.input('relax_cores', valid_type=orm.Int, serializer=orm.to_aiida_type, required=False,
                   validator=validate_positive,
                   help='Cores the relax jobs share: no more jobs run at once, each on its share. Default: this '
                        'machine\'s where the jobs run on it (direct scheduler, local transport), else no limit.')
        spec.expose_inputs(
            GenerateCalculation, namespace='generate',
            include=('code', 'checkpoint', 'guided', 'plausible', 'known_prototypes', 'energy_guidance', 'energy_screen',
                     'exclude', 'metadata'),
        )
        spec.expose_inputs(RelaxCalculation, namespace='relax', include=('code', 'relaxer', 'checkpoint', 'settings', 'metadata'))
        spec.outline(
            cls.setup,
            cls.run_generate,
            cls.inspect_generate,
            cls.run_realize,
            cls.prepare_relax,
            while_(cls.relax_pending)(cls.run_relax),
            cls.inspect_relax,
            cls.run_hull,
            cls.results,
        )
        spec.output_namespace('hull_structures', valid_type=orm.StructureData, dynamic=True,
                              help='Relaxed structures on or within hull_tolerance of the reference hull.')
        spec.output('table', valid_type=orm.List, help='A row per generated structure: energies, symmetry, novelty.')
        spec.output('realization', valid_type=orm.List,
                    help='Each distinct generated protostructure: the structure it became, or why it could not be realized.')
        spec.output('elemental_energies', valid_type=orm.Dict, help='Energy (eV/atom) of each elemental reference.')
        spec.output('elemental_sources', valid_type=orm.Dict,
                    help='Where each elemental reference structure came from: an MP id, or ase-reference-state.')
        spec.output('spacegroup_choice', valid_type=orm.Dict, required=False,
                    help='How the scanned groups were chosen and why (absent where spacegroups was given).')
        spec.output('cifs', valid_type=orm.FolderData, help='CIFs of all relaxed generated structures.')
        spec.output_namespace('plots', valid_type=orm.SinglefileData, dynamic=True, help='Hull plots, the symmetry heatmaps and the e_above_hull histogram.')
        spec.exit_code(401, 'ERROR_GENERATION_FAILED', message='Every generate job failed.')
        spec.exit_code(402, 'ERROR_NOTHING_REALIZED', message='No generated protostructure could be realized.')
        spec.exit_code(403, 'ERROR_RELAXATION_FAILED', message='No relax job produced results.')

    def setup(self) -> None:
        """The groups to scan: those given, else chosen by ``choose_spacegroups``, whose report is an output."""
        if 'spacegroups' in self.inputs:
            spacegroups, how = self.inputs.spacegroups.get_list(), 'given'
        else:
            chosen = choose_spacegroups(self.inputs.chemsys, self.inputs.spacegroup_count, self.inputs.spacegroup_choice)
            self.out('spacegroup_choice', chosen['report'])
            spacegroups, how = chosen['spacegroups'].get_list(), f'chosen by {self.inputs.spacegroup_choice.value}'
        self.ctx.spacegroups = spacegroups
        self.ctx.samples = None  # the same num_samples in every group
        if 'samples_per_spacegroup' in self.inputs:
            shares = self.inputs.samples_per_spacegroup.get_dict()
            self.ctx.samples = {group: shares.get(str(group), self.inputs.num_samples.value) for group in spacegroups}
            counts = ' '.join(f'{group}:{count}' for group, count in self.ctx.samples.items())
            self.report(f'{self.inputs.chemsys.value}: samples per space group ({how}; shared by '
                        f'samples_per_spacegroup) {counts}')
            return
        self.report(f'{self.inputs.chemsys.value}: {self.inputs.num_samples.value} samples in each of '
                    f'{len(spacegroups)} space groups ({how}): {" ".join(map(str, spacegroups))}')

    def run_generate(self) -> None:
        """One generate job per batch of space groups; each batch gets its own seed."""
        inputs = self.exposed_inputs(GenerateCalculation, namespace='generate')
        for index, spacegroups in enumerate(_chunks(self.ctx.spacegroups, self.inputs.spacegroups_per_job.value)):
            slots, num_samples = spacegroups, self.inputs.num_samples
            if self.ctx.samples is not None:  # each group repeated by its samples, one sample per entry
                slots = [group for group in spacegroups for _ in range(self.ctx.samples[group])]
                num_samples = orm.Int(1)
                if not slots:
                    continue
            job = self.submit(
                GenerateCalculation, **inputs, chemsys=self.inputs.chemsys, spacegroups=orm.List(slots),
                num_samples=num_samples, e_above_hull=self.inputs.e_above_hull, guidance=self.inputs.guidance,
                steps=self.inputs.steps, seed=orm.Int(self.inputs.seed.value + index),
            )
            self.to_context(generate=append_(job))
        # The baselines as sources beside the model: calcfunctions of seconds, run here.
        if self.inputs.random_samples.value:
            self.ctx.random = random_protostructures_source(
                self.inputs.chemsys, orm.List(self.ctx.spacegroups), self.inputs.random_samples, self.inputs.seed
            )
        if self.inputs.substitution_samples.value:
            self.ctx.substituted = substitution_source(self.inputs.chemsys, self.inputs.substitution_samples)

    def inspect_generate(self):  # noqa: ANN201 - an ExitCode or None
        self._report_failed(self.ctx.generate)
        finished = [job for job in self.ctx.generate if job.is_finished_ok]
        if not finished:
            return self.exit_codes.ERROR_GENERATION_FAILED
        self.ctx.generated = finished
        return None

    def run_realize(self):  # noqa: ANN201
        """Realize the distinct protostructures of all generate jobs in one calcfunction."""
        lists = {f'batch_{index}': job.outputs.protostructures for index, job in enumerate(self.ctx.generated)}
        if 'random' in self.ctx:
            lists[RANDOM_LIST] = self.ctx.random
        if self.inputs.candidates.value > 1:
            lists['candidates'] = self.inputs.candidates
        if self.inputs.realize_method.value == 'template':
            labels = [label for node in lists.values() if isinstance(node, orm.List) for label in node.get_list()]
            lists.update(template_nodes(labels, 1, shipped_templates()))
        realized = realize_protostructures(seed=self.inputs.seed, attempts=self.inputs.realize_attempts,
                                           method=self.inputs.realize_method, **lists)
        self.ctx.realize_report = realized['report']
        self.out('realization', realized['report'])  # attached now: it stays even if nothing could be realized
        structures = {key: node for key, node in realized.items() if key != 'report'}
        self.ctx.realized = {key: node for key, node in structures.items() if not alternative_of(key)}
        self.ctx.alternatives = {key: node for key, node in structures.items() if alternative_of(key)}
        report = realized['report'].get_list()
        self.report(f'{len(self.ctx.realized)} of {len(report)} distinct protostructures realized')
        if 'substituted' in self.ctx:
            substituted = {key: node for key, node in self.ctx.substituted.items() if key.startswith('substituted_')}
            self.ctx.realized.update(substituted)
            self.report(f'{len(substituted)} structures by ionic substitution')
        if not self.ctx.realized:
            return self.exit_codes.ERROR_NOTHING_REALIZED
        return None

    def prepare_relax(self) -> None:
        """Jobs of at most ``structures_per_job`` realized structures (default: ``default_structures_per_job``), like
        mixes of cell sizes, run as many at once as ``relax_memory_gib`` holds and, where they share a machine,
        ``relax_cores`` allows.

        Every job relaxes the elemental references too: the staged protocol prunes and picks the structures for
        its free stage by their distance to the hull.
        """
        self.ctx.references = elemental_reference_structures(self.inputs.chemsys)
        sizes = {key: len(node.sites) for key, node in self.ctx.realized.items()}
        memory = self.inputs.relax_memory_gib.value if 'relax_memory_gib' in self.inputs else default_relax_memory_gib()
        cores = self.inputs.relax_cores.value if 'relax_cores' in self.inputs else shared_cores(self.inputs.relax.code)
        if 'structures_per_job' in self.inputs:
            per_job = self.inputs.structures_per_job.value
        else:
            per_job = default_structures_per_job(len(sizes), cores)
        self.ctx.relax_queue = balanced_jobs(sizes, per_job)
        self.ctx.relax_at_once, self.ctx.relax_job_cores = relax_layout(len(self.ctx.relax_queue), memory, cores)
        share = '' if cores is None else f', {self.ctx.relax_job_cores} of {cores} cores each'
        self.report(f'{len(self.ctx.relax_queue)} relax jobs, {self.ctx.relax_at_once} at a time ({memory:.0f} GiB{share})')

    def relax_pending(self) -> bool:
        return bool(self.ctx.relax_queue)

    def run_relax(self) -> None:
        """Submit the next jobs; each runs in a ``RelaxBaseWorkChain``, which restarts a job killed midway with
        only its unfinished structures."""
        inputs = self.exposed_inputs(RelaxCalculation, namespace='relax')
        # The staged protocol under the given settings: {'fix_symmetry': False, 'prune_above': None} is the free
        # relaxation without pruning of earlier versions.
        given = inputs['settings'].get_dict() if 'settings' in inputs else {}
        share = {} if self.ctx.relax_job_cores is None else {'cores': self.ctx.relax_job_cores}
        inputs['settings'] = orm.Dict({**STAGED_SETTINGS, **share, **given})
        # Progress in the report while a job runs: ``relaxed 17 of 36 (3 pruned, 1 failed)``.
        inputs['monitors'] = {'progress': orm.Dict({'entry_point': 'wyckoffdiff.relax_progress'})}
        batches, self.ctx.relax_queue = self.ctx.relax_queue[: self.ctx.relax_at_once], self.ctx.relax_queue[self.ctx.relax_at_once :]
        for batch in batches:
            structures = {**self.ctx.references, **{key: self.ctx.realized[key] for key in batch}}
            alternatives = {key: node for key, node in self.ctx.alternatives.items() if alternative_of(key) in batch}
            job = self.submit(RelaxBaseWorkChain, relax={**inputs, 'structures': structures,
                                                         **({'alternatives': alternatives} if alternatives else {})})
            self.to_context(relax=append_(job))

    def inspect_relax(self):  # noqa: ANN201
        self._report_failed(self.ctx.relax)
        usable = [job for job in self.ctx.relax if 'results' in job.outputs]  # a partial batch still counts
        if not usable:
            return self.exit_codes.ERROR_RELAXATION_FAILED
        self.ctx.relaxed_jobs = usable
        return None

    def _report_failed(self, jobs: list[orm.ProcessNode]) -> None:
        """Name every child that did not finish ok, so the scan's report says which batch to look at."""
        for job in jobs:
            if not job.is_finished_ok:
                self.report(f'{job.process_label}<{job.pk}> failed with exit status {job.exit_status}: {job.exit_message}')

    def run_hull(self) -> None:
        relaxation: dict[str, orm.Data] = {}
        for index, job in enumerate(self.ctx.relaxed_jobs):
            relaxation[f'results_{index}'] = job.outputs.results
            for key, node in _relaxed_of(job).items():
                relaxation[f'relaxed_{key}'] = node
        if 'substituted' in self.ctx:
            relaxation['substitution_report'] = self.ctx.substituted['report']
        self.ctx.hull = assemble_hull(
            chemsys=self.inputs.chemsys, realize_report=self.ctx.realize_report, hull_tolerance=self.inputs.hull_tolerance,
            **relaxation,
        )

    def results(self) -> None:
        hull = self.ctx.hull
        relaxed = {key: node for job in self.ctx.relaxed_jobs for key, node in _relaxed_of(job).items()}
        on_hull = {key: relaxed[key] for key in hull['hull_keys'].get_list()}
        self.out('hull_structures', on_hull)
        for name in ('table', 'elemental_energies', 'elemental_sources', 'cifs'):
            self.out(name, hull[name])
        self.out('plots', {name: node for name, node in hull.items() if isinstance(node, orm.SinglefileData)})
        group, _ = orm.Group.collection.get_or_create(label=f'wyckoffdiff/{self.inputs.chemsys.value}')
        group.add_nodes(list(on_hull.values()))
        self.report(f'{len(on_hull)} hull structures, added to group {group.label}')
