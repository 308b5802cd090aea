"""How the phase-diagram workflow lays its relax jobs over the machine: how many at once, on how many cores each."""

from __future__ import annotations

import pytest
from aiida import orm

from aiida_wyckoffdiff.relax import available_cores
from aiida_wyckoffdiff.workchains.phase_diagram import (
    RELAX_JOB_GIB,
    balanced_jobs,
    default_structures_per_job,
    relax_layout,
    shared_cores,
)


@pytest.mark.parametrize(
    ('jobs', 'memory', 'cores', 'expected'),
    [
        (11, 24.0, 2, (2, 1)),  # this project's machine: two one-thread jobs, not six two-thread ones
        (1, 24.0, 2, (1, 2)),  # one job alone gets both cores
        (11, 24.0, None, (6, None)),  # a cluster's jobs have their own cores: only memory bounds them
        (11, RELAX_JOB_GIB, 16, (1, 16)),  # memory for one job: it gets all the cores
        (11, 64.0, 16, (11, 1)),
        (3, 64.0, 16, (3, 5)),
    ],
)
def test_relax_layout_bounds_jobs_by_memory_and_shared_cores(jobs, memory, cores, expected) -> None:
    assert relax_layout(jobs, memory, cores) == expected


@pytest.mark.parametrize(
    ('structures', 'cores', 'per_job', 'layout'),
    [
        (725, 2, 725, (1, 2)),  # this project's machine: one job, one queue for both cores' workers
        (725, 1, 725, (1, 1)),
        (725, 16, 91, (8, 2)),  # eight jobs of two cores, one wave where the memory holds them
        (3, 16, 1, (3, 5)),
        (725, None, 64, (6, None)),  # a cluster: jobs of 64, as many at once as the memory holds
    ],
)
def test_default_structures_per_job_fills_the_shared_cores_in_one_wave(structures, cores, per_job, layout) -> None:
    assert default_structures_per_job(structures, cores) == per_job
    jobs = len(balanced_jobs({f'structure_{i:05d}': 10 for i in range(structures)}, per_job))
    assert relax_layout(jobs, 24.0 if cores is None else 64.0, cores) == layout


def test_balanced_jobs_hold_every_key_once_and_like_mixes_of_sizes() -> None:
    sizes = {f'structure_{i:05d}': size for i, size in enumerate([4, 96, 8, 60, 12, 30, 6, 48, 24, 10, 80, 16, 3])}
    jobs = balanced_jobs(sizes, per_job=4)
    assert len(jobs) == 4 and max(len(job) for job in jobs) == 4
    assert sorted(key for job in jobs for key in job) == sorted(sizes)
    totals = sorted(sum(sizes[key] for key in job) for job in jobs)
    # In key order, 4 per job, the atoms per job would be 168, 96, 130 and 3.
    assert totals == [98, 99, 100, 100], totals
    assert balanced_jobs({'a': 1}, per_job=64) == [['a']]


@pytest.mark.usefixtures('aiida_profile_clean')
def test_shared_cores_only_where_jobs_run_on_this_machine(aiida_localhost) -> None:
    from aiida_wyckoffdiff.codes import get_or_create_code

    assert shared_cores(get_or_create_code(aiida_localhost)) == available_cores()
    cluster = orm.Computer(label='cluster', hostname='cluster.example.org', transport_type='core.ssh',
                           scheduler_type='core.slurm', workdir='/scratch/{username}').store()
    code = orm.InstalledCode(computer=cluster, filepath_executable='/opt/bin/wyckoffdiff').store()
    assert shared_cores(code) is None
