"""``wyckoffdiff.rounds``: phase-diagram runs that each fine-tune the model on what the runs before relaxed.

A round is a ``wyckoffdiff.phase_diagram`` run sampled from the latest checkpoint, then ``wyckoffdiff.finetune`` on
the rows of every round so far (:mod:`aiida_wyckoffdiff.relaxation_rows`), mixed with the dataset's rows. The
e_above_hull condition learns a contrast the Materials Project rows lack (all within 0.08 eV/atom of the hull).
With ``allocate_spacegroups``, every round after the first also shares its samples among the first round's space
groups by how often the rounds before ended near the target in each (``wyckoffdiff.allocate_spacegroups``): where a
round's structures end is far more predictable across groups than within one (docs/rounds.md).
Every round uses the same seed, so rounds differ by their checkpoint and their allocation only.

Restarts: a relaunched run relaxes nothing twice where caching is on (``verdi config set caching.default_enabled
True``, or ``enable_caching()`` around the launch): its generate and relax jobs and its fine-tunings have the same
inputs as before, so AiiDA reuses their outputs (docs/rounds.md).
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from aiida import orm
from aiida.common import AttributeDict
from aiida.engine import ToContext, WorkChain, calcfunction, while_

from ..calculations.finetune import finetune_inputs, finetune_on_rows, validate_finetune_settings
from ..calculations.generate import validate_positive
from ..calculations.spacegroups import allocate_spacegroups
from ..provenance import structures_of
from .phase_diagram import PhaseDiagramWorkChain
from .protocols import ProtocolMixin

__all__ = ['RoundsWorkChain', 'relaxed_protostructures', 'tabulate_rounds']


@calcfunction
def tabulate_rounds(**rounds: orm.Data) -> orm.List:
    """A row per round from ``table_<n>`` (round n's phase-diagram table) and ``facts_<n>`` (its run, checkpoints,
    hits and seconds): ``relaxed`` counts the rows with an energy (pruned ones included), ``median_e_above_hull`` is
    theirs in eV/atom."""
    rows = []
    numbers = sorted(int(name.removeprefix('facts_')) for name in rounds if name.startswith('facts_'))
    for number in numbers:
        table = rounds[f'table_{number}'].get_list()
        energies = [row['e_above_hull'] for row in table if row['e_above_hull'] is not None]
        rows.append({'round': number, **rounds[f'facts_{number}'].get_dict(), 'relaxed': len(energies),
                     'median_e_above_hull': statistics.median(energies) if energies else None})
    return orm.List(rows)


@calcfunction
def relaxed_protostructures(**tables: orm.List) -> orm.List:
    """The protostructure labels the phase-diagram ``tables`` requested, sorted: what a later round need not draw."""
    return orm.List(sorted({row['label_requested'] for table in tables.values() for row in table.get_list()
                            if row.get('label_requested')}))


class RoundsWorkChain(ProtocolMixin, WorkChain):
    """Rounds of generate -> relax -> hull, each followed by fine-tuning on the rounds' relaxations."""

    _protocol_file = 'rounds'

    @classmethod
    def get_builder_from_protocol(
        cls,
        code: orm.AbstractCode | str,
        chemsys: str,
        protocol: str | None = None,
        overrides: dict[str, Any] | None = None,
        *,
        dataset: str | Path | None = None,
        model_checkpoint: str | Path | None = None,
    ) -> Any:
        """A builder from ``protocols/rounds.yaml``; each round's run from the phase-diagram protocol it names.

        :param overrides: inputs over the protocol's; those of the runs go under ``phase_diagram``, e.g.
            ``{'rounds': 3, 'finetune': {'epochs': 2}, 'phase_diagram': {'num_samples': 4}}``;
            ``phase_diagram_protocol`` chooses the runs' protocol (default: the one this protocol names).
        :param dataset: the dataset file rows are mixed with; default the cache of the found data folder.
        :param model_checkpoint: the first round's weights; default the checkpoint shipped with the package.
        """
        from ..data import default_dataset_path, find_data_dir
        from ..nodes import dataset_file

        overrides = dict(overrides or {})
        chosen_run_protocol = overrides.pop('phase_diagram_protocol', None)
        inputs = cls.get_protocol_inputs(protocol, overrides)
        run_protocol = chosen_run_protocol or inputs.pop('phase_diagram_protocol')
        inputs.pop('phase_diagram_protocol', None)
        run_overrides = inputs.pop('phase_diagram', {})
        builder = cls.get_builder()
        run = PhaseDiagramWorkChain.get_builder_from_protocol(
            code, chemsys, run_protocol, run_overrides, model_checkpoint=model_checkpoint
        )
        builder.phase_diagram._update(run._inputs(prune=True))
        for key, value in inputs.items():  # not _update: that reads the `finetune` dictionary as a namespace
            setattr(builder, key, value)
        builder.dataset = dataset_file(dataset or default_dataset_path(find_data_dir()))
        return builder

    @classmethod
    def define(cls, spec) -> None:  # noqa: ANN001 - aiida-core's spec type
        super().define(spec)
        spec.expose_inputs(PhaseDiagramWorkChain, namespace='phase_diagram')
        spec.input('rounds', valid_type=orm.Int, serializer=orm.to_aiida_type, default=lambda: orm.Int(2),
                   validator=validate_positive, help='Phase-diagram runs, each followed by a fine-tuning.')
        spec.input('dataset', valid_type=orm.SinglefileData,
                   help='The protostructure dataset (`wyckoffdiff data build`) whose rows are mixed in.')
        spec.input('allocate_spacegroups', valid_type=orm.Bool, serializer=orm.to_aiida_type,
                   default=lambda: orm.Bool(True),
                   help="Share each later round's samples among the first round's space groups by how often the "
                        'rounds before ended near the e_above_hull target in each; false: the same even scan.')
        spec.input('new_protostructures', valid_type=orm.Bool, serializer=orm.to_aiida_type,
                   default=lambda: orm.Bool(True),
                   help='Later rounds draw only protostructures no round before requested (generate.exclude); false: '
                        'a later round may relax the same protostructures again.')
        spec.input('finetune', valid_type=orm.Dict, serializer=orm.to_aiida_type, required=False,
                   validator=validate_finetune_settings,
                   help='Settings of wyckoffdiff.finetune (epochs, dataset_share, val_rows, ...); '
                        'default FINETUNE_DEFAULTS.')
        spec.outline(
            cls.setup,
            while_(cls.rounds_pending)(cls.run_round, cls.inspect_round, cls.finetune),
            cls.results,
        )
        spec.output_namespace('hull_structures', valid_type=orm.StructureData, dynamic=True,
                              help="The last round's structures within hull_tolerance of the reference hull.")
        spec.output_namespace('checkpoints', valid_type=orm.SinglefileData, dynamic=True,
                              help='The checkpoint fine-tuned after each round: round_1, round_2, ...')
        spec.output('rounds', valid_type=orm.List,
                    help='A row per round: its run, hits within hull_tolerance, wall seconds, median e_above_hull, '
                         'rows.')
        spec.exit_code(401, 'ERROR_ROUND_FAILED', message='The phase-diagram run of round {number} failed: {message}')
        spec.exit_code(402, 'ERROR_NO_ROWS',
                       message='Round {number} left no relaxed structure to learn from: {message}')

    def setup(self) -> None:
        self.ctx.number = 0
        self.ctx.checkpoint = self.inputs.phase_diagram.generate.checkpoint
        self.ctx.runs, self.ctx.facts = [], []

    def rounds_pending(self) -> bool:
        return self.ctx.number < self.inputs.rounds.value

    def run_round(self):  # noqa: ANN201 - ToContext
        """The phase-diagram run, sampled from the latest checkpoint."""
        self.ctx.number += 1
        inputs = AttributeDict(self.exposed_inputs(PhaseDiagramWorkChain, namespace='phase_diagram'))
        inputs.generate = {**inputs.generate, 'checkpoint': self.ctx.checkpoint}
        tables = {f'table_{number}': run.outputs.table for number, run in enumerate(self.ctx.runs, start=1)}
        if tables and self.inputs.new_protostructures.value:
            inputs.generate['exclude'] = relaxed_protostructures(
                **tables, metadata={'call_link_label': f'relaxed_before_round_{self.ctx.number}'})
        if tables and self.inputs.allocate_spacegroups.value:
            inputs.spacegroups, inputs.samples_per_spacegroup = self._allocation(inputs, tables)
        inputs.metadata = {**inputs.get('metadata', {}), 'call_link_label': f'round_{self.ctx.number}'}
        self.report(f'round {self.ctx.number} of {self.inputs.rounds.value}: sampling from '
                    f'{self.ctx.checkpoint.__class__.__name__}<{self.ctx.checkpoint.pk}>')
        return ToContext(run=self.submit(PhaseDiagramWorkChain, **inputs))

    def _allocation(self, inputs: AttributeDict, tables: dict[str, orm.List]) -> tuple[orm.List, orm.Dict]:
        """The first round's groups and their samples shared by the rounds so far (``allocate_spacegroups``)."""
        first = self.ctx.runs[0]
        groups = first.inputs.spacegroups if 'spacegroups' in first.inputs else \
            orm.List(first.outputs.spacegroup_choice['spacegroups'])
        allocation = allocate_spacegroups(
            spacegroups=groups, num_samples=orm.Int(inputs.num_samples.value * len(groups.get_list())),
            e_above_hull=inputs.e_above_hull,
            **tables, metadata={'call_link_label': f'allocate_round_{self.ctx.number}'},
        )
        self.report(f'round {self.ctx.number}: samples per space group by the rounds before: '
                    + ' '.join(f'{group}:{count}' for group, count in allocation['samples'].get_dict().items()))
        return groups, allocation['samples']

    def inspect_round(self):  # noqa: ANN201 - an ExitCode or None
        run = self.ctx.run
        if not run.is_finished_ok:
            message = f'{run.process_label}<{run.pk}> exit status {run.exit_status}: {run.exit_message}'
            return self.exit_codes.ERROR_ROUND_FAILED.format(number=self.ctx.number, message=message)
        self.ctx.runs.append(run)
        return None

    def finetune(self):  # noqa: ANN201 - an ExitCode or None
        """Fine-tune the latest checkpoint on the rows of every round so far."""
        from ..exceptions import NoRelaxationsError
        from ..relaxation_rows import find_relaxations, training_rows

        run = self.ctx.run
        try:
            report = training_rows(find_relaxations(runs=[node.pk for node in self.ctx.runs]))
        except (NoRelaxationsError, ValueError) as exception:
            return self.exit_codes.ERROR_NO_ROWS.format(number=self.ctx.number, message=str(exception))
        self.report(f'round {self.ctx.number}: {report.summary()}')
        settings = {'settings': self.inputs.finetune} if 'finetune' in self.inputs else {}
        rows, sources = finetune_inputs(report.rows)
        tuned = finetune_on_rows(
            checkpoint=self.ctx.checkpoint, dataset=self.inputs.dataset, rows=rows, **settings, **sources,
            metadata={'call_link_label': f'finetune_round_{self.ctx.number}'},
        )
        finetune_report = tuned['report'].get_dict()
        self.ctx.facts.append({
            'run_pk': run.pk,
            'checkpoint_pk': self.ctx.checkpoint.pk,
            'hits': len(structures_of(run)),  # no output where none was near the hull
            'hull_tolerance': run.inputs.hull_tolerance.value,
            'wall_seconds': round((run.mtime - run.ctime).total_seconds(), 1),
            'rows': finetune_report['rows'],
            'finetune_seconds': finetune_report['seconds'],
            'finetuned_checkpoint_pk': tuned['checkpoint'].pk,
            'samples_per_spacegroup': run.inputs.samples_per_spacegroup.get_dict()
            if 'samples_per_spacegroup' in run.inputs else None,
        })
        self.out(f'checkpoints.round_{self.ctx.number}', tuned['checkpoint'])
        self.ctx.checkpoint = tuned['checkpoint']
        return None

    def results(self) -> None:
        self.out('hull_structures', structures_of(self.ctx.run))
        inputs: dict[str, orm.Data] = {}
        for number, (run, facts) in enumerate(zip(self.ctx.runs, self.ctx.facts, strict=True), start=1):
            inputs.update({f'table_{number}': run.outputs.table, f'facts_{number}': orm.Dict(facts)})
        table = tabulate_rounds(**inputs)
        self.out('rounds', table)
        for row in table.get_list():
            median = 'n/a' if row['median_e_above_hull'] is None else f"{row['median_e_above_hull']:.3f}"
            self.report(f"round {row['round']}: {row['hits']} hull structures of {row['relaxed']} relaxed, median "
                        f"e_above_hull {median} eV/atom, {row['wall_seconds']:.0f} s; fine-tuned on {row['rows']} rows "
                        f"in {row['finetune_seconds']:.0f} s")
