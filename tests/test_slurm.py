"""The CalcJobs through Slurm: the submission scripts a cluster receives, and real jobs on a one-node Slurm.

``make test`` starts that Slurm (scripts/slurm.sh: slurm-wlm and munge on this machine). Where it is not
running the real-scheduler tests skip, saying why; with ``CI`` set they fail instead, so CI cannot pass
without having run them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from aiida import orm
from aiida.engine import run_get_node
from pymatgen.core import Lattice, Structure

from aiida_wyckoffdiff.calculations.generate import GenerateCalculation
from aiida_wyckoffdiff.calculations.relax import RelaxCalculation
from aiida_wyckoffdiff.codes import get_or_create_code, get_or_create_localhost
from aiida_wyckoffdiff.model.checkpoint import shipped_checkpoint_path
from aiida_wyckoffdiff.nodes import CheckpointData

pytestmark = pytest.mark.usefixtures('aiida_profile_clean')

GPU_JOB = {
    'resources': {'num_machines': 1, 'num_mpiprocs_per_machine': 1, 'num_cores_per_mpiproc': 8},
    'max_wallclock_seconds': 2 * 3600,
    'queue_name': 'gpu',
    'account': 'my-project',
    'custom_scheduler_commands': '#SBATCH --gres=gpu:1',
}
"""docs/cluster.md's GPU options, verbatim."""


def _slurm_problem() -> str | None:
    """Why the local Slurm cannot take jobs, or ``None`` when its node is idle."""
    if shutil.which('sinfo') is None or shutil.which('sbatch') is None:
        return 'Slurm is not installed (scripts/slurm.sh installs and starts it; `make test` runs it)'
    state = subprocess.run(['sinfo', '-h', '-o', '%t'], capture_output=True, text=True, check=False)
    if state.returncode != 0 or 'idle' not in state.stdout.split():
        return f'no idle Slurm node (sinfo: {(state.stdout + state.stderr).strip() or "nothing"}): run scripts/slurm.sh'
    return None


@pytest.fixture
def slurm_code(tmp_path) -> orm.InstalledCode:
    """The wyckoffdiff Code on a ``core.slurm`` Computer over ``core.local``: jobs go through sbatch and squeue."""
    problem = _slurm_problem()
    if problem is not None:
        if os.environ.get('CI'):
            pytest.fail(f'CI must run the Slurm tests: {problem}')
        pytest.skip(problem)
    computer = get_or_create_localhost('localhost-slurm', workdir=str(tmp_path / 'slurm'), scheduler='core.slurm')
    computer.set_minimum_job_poll_interval(1)
    return get_or_create_code(computer)


@pytest.fixture
def cluster_code() -> orm.InstalledCode:
    """docs/cluster.md's Code on an unreachable cluster: only its submission scripts are written, nothing runs."""
    computer = orm.Computer(
        label='mycluster',
        hostname='login.mycluster.org',
        transport_type='core.ssh',
        scheduler_type='core.slurm',
        workdir='/scratch/{username}/aiida',
    ).store()
    computer.set_default_mpiprocs_per_machine(1)
    return orm.InstalledCode(
        computer=computer,
        filepath_executable='/home/me/wyckoffdiff-env/bin/wyckoffdiff',
        label='wyckoffdiff',
        prepend_text='module load cuda/12.4',
    ).store()


def _li2o() -> orm.StructureData:
    structure = Structure.from_spacegroup(225, Lattice.cubic(4.5), ['Li', 'O'], [[0.25, 0.25, 0.25], [0, 0, 0]])
    return orm.StructureData(pymatgen=structure)


def _submit_script(process_class, inputs: dict) -> list[str]:
    """The script exactly as the engine would upload it: a dry run writes it without any transport."""
    inputs['metadata'] = {**inputs['metadata'], 'dry_run': True, 'store_provenance': False}
    _, node = run_get_node(process_class, **inputs)
    return (Path(node.dry_run_info['folder']) / '_aiidasubmit.sh').read_text().splitlines()


def test_gpu_submission_scripts(cluster_code, tmp_path, monkeypatch) -> None:
    """The cluster guide's options give exactly these #SBATCH lines and command lines, for generate and relax."""
    monkeypatch.chdir(tmp_path)  # dry runs write their folders into the working directory
    checkpoint = CheckpointData.get_or_create(shipped_checkpoint_path(), kind='wyckoffdiff')
    generate = _submit_script(
        GenerateCalculation,
        {
            'code': cluster_code,
            'checkpoint': checkpoint,
            'chemsys': orm.Str('Li-O'),
            'spacegroups': orm.List([225]),
            'num_samples': orm.Int(64),
            'metadata': {'options': GPU_JOB},
        },
    )
    relax = _submit_script(
        RelaxCalculation,
        {
            'code': cluster_code,
            'structures': {'li2o': _li2o()},
            'settings': orm.Dict({'device': 'cuda'}),
            'metadata': {'options': GPU_JOB},
        },
    )
    for script in (generate, relax):
        directives = [line for line in script if line.startswith('#SBATCH')]
        assert directives == [
            '#SBATCH --no-requeue',
            '#SBATCH --job-name="aiida-None"',  # dry runs have no pk; a real job says aiida-PK
            '#SBATCH --get-user-env',
            '#SBATCH --output=_scheduler-stdout.txt',
            '#SBATCH --error=_scheduler-stderr.txt',
            '#SBATCH --partition=gpu',
            '#SBATCH --account=my-project',
            '#SBATCH --nodes=1',
            '#SBATCH --ntasks-per-node=1',
            '#SBATCH --cpus-per-task=8',
            '#SBATCH --time=02:00:00',
            '#SBATCH --gres=gpu:1',
        ], directives
        assert 'module load cuda/12.4' in script
    command = next(line for line in generate if 'wyckoffdiff' in line and 'generate' in line)
    assert command.startswith(
        "'/home/me/wyckoffdiff-env/bin/wyckoffdiff' 'generate' '--checkpoint' 'model.ckpt' "
        f"'--checkpoint-sha256' '{checkpoint.sha256}' '--chemsys' 'Li-O' '--spacegroup' '225' "
        "'--num-samples' '64'"
    )
    assert command.endswith("'--output' 'results.json'  > 'stdout.txt' 2> 'stderr.txt'")
    command = next(line for line in relax if 'wyckoffdiff' in line and 'relax' in line)
    assert "'relax' 'structures/li2o.json' '--relaxer' 'chgnet'" in command and "'--device' 'cuda'" in command


def test_generate_and_relax_jobs_through_slurm(slurm_code, li_o_generate_inputs) -> None:
    """Real sbatch jobs on this machine's Slurm: each CalcJob gets a Slurm job id and finishes with its outputs."""
    options = {'max_wallclock_seconds': 1200, 'resources': {'num_machines': 1, 'num_mpiprocs_per_machine': 1}}
    _, generate = run_get_node(
        GenerateCalculation, **li_o_generate_inputs(slurm_code, steps=orm.Int(20), metadata={'options': options})
    )
    _, relax = run_get_node(
        RelaxCalculation,
        code=slurm_code,
        structures={'li2o': _li2o()},
        settings=orm.Dict({'steps': 5, 'fmax': 0.5}),
        metadata={'options': options},
    )
    for node in (generate, relax):
        assert node.is_finished_ok, f'{node.process_label}<{node.pk}>: [{node.exit_status}] {node.exit_message}'
        assert node.computer.scheduler_type == 'core.slurm'
        job_id = node.get_job_id()
        assert job_id and job_id.isdigit(), job_id
        # Slurm itself wrote the job's scheduler files (#SBATCH --output / --error), so the job ran under sbatch.
        assert (
            '_scheduler-stdout.txt' in node.outputs.retrieved.base.repository.list_object_names()
            or (Path(node.get_remote_workdir()) / '_scheduler-stdout.txt').is_file()
        )
    assert generate.outputs.protostructures.get_list()[0].endswith(':Li-O')
    assert relax.outputs.results['structures']['li2o']['energy_per_atom'] < 0
