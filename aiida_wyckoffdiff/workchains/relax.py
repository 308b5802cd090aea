"""``wyckoffdiff.relax_base``: a relax job that survives being killed, without relaxing anything twice.

The ``wyckoffdiff relax`` command saves every structure as it finishes, so a job killed by the
scheduler (wall time, memory, a node failure, a user's ``scancel``) ends with exit code 420 and its
finished structures attached. This BaseRestartWorkChain then submits a new job with only the
unfinished structures and, at the end, merges all jobs' outputs: the outputs look like one
RelaxCalculation's, and each relaxed structure still links to the job that relaxed it.
"""

from __future__ import annotations

from aiida import orm
from aiida.common import AttributeDict
from aiida.engine import BaseRestartWorkChain, ExitCode, ProcessHandlerReport, calcfunction, process_handler, while_

from ..calculations.relax import RelaxCalculation, alternative_of, failed_structures

__all__ = ['RelaxBaseWorkChain', 'merge_relax_results']


@calcfunction
def merge_relax_results(**outputs: orm.Data) -> dict[str, orm.Data]:
    """One ``results`` (and ``trajectories``) from several relax jobs of one restart chain.

    ``outputs`` holds ``results_NN`` and ``trajectories_NN`` of job NN; a later job's entry for a key
    wins, though the work chain never gives a finished key to a later job.
    """
    structures: dict = {}
    merged: dict = {}
    trajectories = orm.FolderData()
    for name in sorted(outputs):
        node = outputs[name]
        if name.startswith('results_'):
            merged = merged or node.get_dict()  # potential, checkpoint and settings are the same in every job
            structures.update(node['structures'])
        else:
            for filename in node.base.repository.list_object_names():
                trajectories.base.repository.put_object_from_bytes(
                    node.base.repository.get_object_content(filename, mode='rb'), filename
                )
    result: dict[str, orm.Data] = {'results': orm.Dict({**merged, 'structures': structures})}
    if trajectories.base.repository.list_object_names():
        result['trajectories'] = trajectories
    return result


class RelaxBaseWorkChain(BaseRestartWorkChain):
    """Run ``wyckoffdiff.relax`` until every structure is relaxed or has failed for a reason of its own."""

    _process_class = RelaxCalculation

    @classmethod
    def define(cls, spec) -> None:  # noqa: ANN001 - aiida-core's spec type
        super().define(spec)
        spec.expose_inputs(RelaxCalculation, namespace='relax')
        # Each job's folders stay with the job: after a restart no single job's folder stands for the merged outputs.
        spec.expose_outputs(RelaxCalculation, exclude=('remote_folder', 'retrieved'))
        spec.outline(
            cls.setup,
            while_(cls.should_run_process)(cls.run_process, cls.inspect_process),
            cls.results,
        )
        spec.exit_code(410, 'ERROR_ALL_STRUCTURES_FAILED', message='No structure could be relaxed: {reasons}')
        spec.exit_code(
            421,
            'ERROR_NO_PROGRESS',
            message='Two jobs in a row were stopped before finishing any structure: '
            'give the jobs more wall time or memory.',
        )
        spec.exit_code(
            710, 'WARNING_SOME_STRUCTURES_FAILED', message='{failed} of {total} structures failed: {reasons}'
        )

    def setup(self) -> None:
        super().setup()
        self.ctx.inputs = AttributeDict(self.exposed_inputs(RelaxCalculation, namespace='relax'))

    @process_handler(priority=500, exit_codes=RelaxCalculation.exit_codes.ERROR_INTERRUPTED)
    def handle_interrupted(self, node: orm.CalcJobNode) -> ProcessHandlerReport:
        """The job was killed midway: keep what it finished, restart with only the structures it did not."""
        finished = set(node.outputs.results['structures']) if 'results' in node.outputs else set()
        if not finished and self.ctx.get('stalled', False):
            self.report(
                f'{node.process_label}<{node.pk}> was stopped before finishing any structure, as was the job before'
            )
            return ProcessHandlerReport(do_break=True, exit_code=self.exit_codes.ERROR_NO_PROGRESS)
        self.ctx.stalled = not finished
        remaining = {key: structure for key, structure in self.ctx.inputs.structures.items() if key not in finished}
        self.report(
            f'{node.process_label}<{node.pk}> stopped after {len(finished)} of {len(self.ctx.inputs.structures)} '
            f'structures ({node.exit_message}); restarting with the {len(remaining)} unfinished ones'
        )
        self.ctx.inputs.structures = remaining
        if 'alternatives' in self.ctx.inputs:
            self.ctx.inputs.alternatives = {key: node for key, node in self.ctx.inputs.alternatives.items()
                                            if alternative_of(key) in remaining}
        return ProcessHandlerReport(do_break=True)

    @process_handler(
        priority=400,
        exit_codes=[
            RelaxCalculation.exit_codes.ERROR_ALL_STRUCTURES_FAILED,
            RelaxCalculation.exit_codes.WARNING_SOME_STRUCTURES_FAILED,
        ],
    )
    def handle_failed_structures(self, node: orm.CalcJobNode) -> ProcessHandlerReport:
        """Structures that exploded, collapsed or hold an element the potential lacks would fail again: finish.

        Their reasons are in ``results``; :meth:`results` merges every job and sets the exit code from the merge.
        """
        self.report(f'{node.process_label}<{node.pk}>: {node.exit_message}; not restarting for these')
        self.ctx.is_finished = True
        return ProcessHandlerReport(do_break=True)

    def inspect_process(self) -> ExitCode | None:
        """As the base class; when it gives up (too many restarts, an unhandled failure), attach what was relaxed."""
        exit_code = super().inspect_process()
        if exit_code is not None and exit_code.status:
            self._attach_merged()
        return exit_code

    def results(self) -> ExitCode | None:
        """Attach all jobs' outputs as if one job had relaxed everything; the exit code names failed structures."""
        structures = self._attach_merged()
        if structures is None:
            return super().results()
        failed, reasons = failed_structures(structures)
        if structures and len(failed) == len(structures):
            return self.exit_codes.ERROR_ALL_STRUCTURES_FAILED.format(reasons=reasons)
        if failed:
            return self.exit_codes.WARNING_SOME_STRUCTURES_FAILED.format(
                failed=len(failed), total=len(structures), reasons=reasons
            )
        return None

    def _attach_merged(self) -> dict[str, dict] | None:
        """Attach ``relaxed``, ``results`` and ``trajectories`` of all jobs with results; return the results."""
        jobs = [job for job in self.ctx.children if 'results' in job.outputs]
        if not jobs:
            return None
        relaxed = {key: node for job in jobs if 'relaxed' in job.outputs for key, node in job.outputs.relaxed.items()}
        if len(jobs) == 1:
            merged = {name: jobs[0].outputs[name] for name in ('results', 'trajectories') if name in jobs[0].outputs}
        else:
            pieces = {
                f'{name}_{index:02d}': job.outputs[name]
                for index, job in enumerate(jobs)
                for name in ('results', 'trajectories')
                if name in job.outputs
            }
            merged = merge_relax_results(**pieces)
        self.out_many({**merged, 'relaxed': relaxed} if relaxed else merged)
        self.report(f'{len(relaxed)} structures relaxed in {len(jobs)} job(s)')
        return merged['results']['structures']
