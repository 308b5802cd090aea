"""The production set-up: the phase-diagram scan through a two-worker daemon, on SQLite and on PostgreSQL + RabbitMQ.

The PostgreSQL server and RabbitMQ are started by ``scripts/services.sh`` (``make test`` runs it). Where
they cannot be reached the PostgreSQL tests are skipped with the reason; with ``CI`` set they fail
instead, so that CI never passes without having exercised the production profile.
"""

from __future__ import annotations

import os
import secrets
import time
from collections import Counter
from contextlib import contextmanager

import pytest
from aiida import orm
from aiida.engine import submit
from aiida.engine.daemon.client import get_daemon_client

from aiida_wyckoffdiff.codes import get_or_create_code, get_or_create_localhost
from aiida_wyckoffdiff.launch import phase_diagram_builder
from aiida_wyckoffdiff.services import PostgresServer, rabbitmq_broker_config, unreachable_services

WORKERS = 2
SCAN_TIMEOUT = 900  # seconds for one tiny scan on a busy 2-core machine (about 2 minutes when idle)
DAEMON_TIMEOUT = 120  # seconds for circus to start or stop workers under load
TINY_SCAN = {'spacegroups': [225], 'num_samples': 2, 'relax_settings': {'steps': 10, 'fmax': 0.1}}
"""One space group, two samples, a short relaxation: every step of the workflow, in minutes."""


@contextmanager
def _sqlite_profile(aiida_config, aiida_profile_factory):
    """The embedded storage with aiida-core's ZeroMQ broker: a daemon without any server to install."""
    with aiida_profile_factory(aiida_config, storage_backend='core.sqlite_dos', broker_backend='core.zeromq') as profile:
        yield profile


@contextmanager
def _postgresql_profile(aiida_config, tmp_path_factory):
    """A ``core.psql_dos`` profile with the RabbitMQ broker, on a database created for it and dropped afterwards.

    Not a test profile (``aiida_profile_factory`` makes those): the broker gives a test profile
    temporary queues, deleted with their tasks when the last worker disconnects, so a daemon
    restart would lose every running process. A production profile has durable queues.
    """
    from aiida.manage.configuration import create_profile, profile_context

    problems = unreachable_services()
    if problems:
        message = 'PostgreSQL/RabbitMQ unreachable (start them with scripts/services.sh): ' + '; '.join(problems)
        if os.environ.get('CI'):
            pytest.fail(message)
        pytest.skip(message)
    server = PostgresServer.from_environment()
    name = f'wyckoffdiff_test_{secrets.token_hex(6)}'
    storage = {**server.create_database(name), 'repository_uri': tmp_path_factory.mktemp('repository').as_uri()}
    try:
        profile = create_profile(aiida_config, storage_backend='core.psql_dos', storage_config=storage, name=name,
                                 broker_backend='core.rabbitmq', broker_config=rabbitmq_broker_config(),
                                 email='test@localhost')
        profile.set_option('warnings.rabbitmq_version', False)  # services.sh switched consumer_timeout off
        aiida_config.update_profile(profile)
        aiida_config.store()
        with profile_context(name, allow_switch=True) as loaded:
            yield loaded
    finally:
        if name in aiida_config.profile_names:
            aiida_config.remove_profile(name)
            aiida_config.store()
        server.drop_database(name)


@pytest.fixture(scope='module', params=['sqlite', 'postgresql'])
def daemon_profile(request, aiida_config, aiida_profile_factory, tmp_path_factory):
    """A temporary profile of each kind, with the wyckoffdiff code and a running two-worker daemon."""
    if request.param == 'sqlite':
        context = _sqlite_profile(aiida_config, aiida_profile_factory)
    else:
        context = _postgresql_profile(aiida_config, tmp_path_factory)
    with context as profile:
        get_or_create_code(get_or_create_localhost(workdir=str(tmp_path_factory.mktemp('work'))))
        client = get_daemon_client()
        client.start_daemon(number_workers=WORKERS, timeout=DAEMON_TIMEOUT)
        try:
            yield profile
        finally:
            if client.is_daemon_running:
                client.stop_daemon(wait=True, timeout=DAEMON_TIMEOUT)


def _tiny_scan_builder():  # noqa: ANN202 - a ProcessBuilder
    builder = phase_diagram_builder('Li-O', **TINY_SCAN)
    builder.steps = 20  # reverse diffusion steps: a fifth of the default, the model's load dominates anyway
    return builder


def _wait(node: orm.ProcessNode, until, timeout: float = SCAN_TIMEOUT) -> None:  # noqa: ANN001 - a predicate
    """Poll ``until(node)`` until it holds, or fail saying where the process stands."""
    deadline = time.monotonic() + timeout
    while not until(node):
        if time.monotonic() > deadline:
            pytest.fail(f'{node.process_label}<{node.pk}> still {node.process_state} ({node.process_status}) after {timeout} s')
        time.sleep(1)


def _work_done(workchain: orm.WorkflowNode) -> dict[str, int]:
    """How many processes of each kind the workflow called, at any depth (the relax jobs run inside relax_base)."""
    return dict(Counter(process.process_label for process in workchain.called_descendants))


def _results(workchain: orm.WorkflowNode) -> dict[str, tuple]:
    """The hull table by key: what was made, its symmetry after relaxation and its energies."""
    return {row['key']: (row['formula'], row['spacegroup_found'], row['energy_per_atom'], row['e_above_hull'])
            for row in workchain.outputs.table.get_list()}


@pytest.fixture(scope='module')
def uninterrupted_scan(daemon_profile) -> orm.WorkflowNode:
    node = submit(_tiny_scan_builder())
    _wait(node, lambda n: n.is_terminated)
    return node


def test_scan_through_a_two_worker_daemon(daemon_profile, uninterrupted_scan) -> None:
    node = uninterrupted_scan
    assert node.is_finished_ok, f'[{node.exit_status}] {node.exit_message}'
    assert get_daemon_client().get_numprocesses()['numprocesses'] == WORKERS
    done = _work_done(node)
    assert done == {'GenerateCalculation': 1, 'realize_protostructures': 1, 'elemental_reference_structures': 1,
                    'RelaxBaseWorkChain': 1, 'RelaxCalculation': 1, 'assemble_hull': 1}, done
    table = node.outputs.table.get_list()
    assert table and {row['spacegroup_requested'] for row in table} == {225}
    assert any(row['energy_per_atom'] is not None for row in table), table
    if daemon_profile.storage_backend == 'core.psql_dos':  # the nodes are rows of the profile's PostgreSQL database
        database = daemon_profile.storage_config['database_name']
        stored = PostgresServer.from_environment().fetch_one(database, 'SELECT count(*) FROM db_dbnode WHERE uuid = %s::uuid', (node.uuid,))
        assert stored == 1


def test_daemon_stopped_mid_scan_resumes_without_redoing_work(daemon_profile, uninterrupted_scan) -> None:
    """Stop the daemon while the relax job runs, start it again: same results, each job run once.

    On the RabbitMQ profile, where the broker keeps the unacknowledged tasks of the stopped workers
    for the new ones (the ZeroMQ broker of the SQLite profile is covered by the scan above).
    """
    if daemon_profile.process_control_backend != 'core.rabbitmq':
        pytest.skip('the restart is exercised on the production profile (RabbitMQ)')
    client = get_daemon_client()
    node = submit(_tiny_scan_builder())

    def relaxing(workflow: orm.WorkflowNode) -> bool:
        """The relax job is with the scheduler: the workflow's step that submitted it is long checkpointed."""
        relax = [child for child in workflow.called_descendants if child.process_type.endswith('wyckoffdiff.relax')]
        return workflow.is_terminated or any(job.get_job_id() is not None for job in relax)

    _wait(node, relaxing)
    assert not node.is_terminated, 'the scan finished before the daemon could be stopped'
    client.stop_daemon(wait=True, timeout=DAEMON_TIMEOUT)
    relax_job = next(child for child in node.called_descendants if child.process_type.endswith('wyckoffdiff.relax'))
    time.sleep(5)
    assert not client.is_daemon_running
    assert not node.is_terminated and not relax_job.is_terminated, 'nothing may advance while the daemon is down'
    client.start_daemon(number_workers=WORKERS, timeout=DAEMON_TIMEOUT)
    _wait(node, lambda n: n.is_terminated)

    assert node.is_finished_ok, f'[{node.exit_status}] {node.exit_message}'
    assert _work_done(node) == _work_done(uninterrupted_scan)
    interrupted, reference = _results(node), _results(uninterrupted_scan)
    assert interrupted.keys() == reference.keys()
    for key, (formula, spacegroup, energy, e_above_hull) in reference.items():
        assert interrupted[key][:2] == (formula, spacegroup), key
        assert interrupted[key][2] == pytest.approx(energy, abs=1e-4), key
        assert interrupted[key][3] == pytest.approx(e_above_hull, abs=1e-4), key
