"""Submission through a real daemon with aiida-core's ZeroMQ broker (no RabbitMQ needed)."""

from __future__ import annotations

import time

import pytest
from aiida import orm
from aiida.engine import submit
from aiida.engine.daemon.client import get_daemon_client

from aiida_wyckoffdiff.codes import get_or_create_code, get_or_create_localhost
from aiida_wyckoffdiff.calculations.generate import GenerateCalculation

TIMEOUT = 600  # seconds: one generate job, on a busy 2-core machine
DAEMON_TIMEOUT = 120  # seconds for circus to start or stop; aiida's default of a few seconds is too short under load


@pytest.fixture
def daemon_profile(aiida_config, aiida_profile_factory):
    """A temporary profile with the ZeroMQ broker and a running one-worker daemon, removed afterwards."""
    with aiida_profile_factory(aiida_config, storage_backend='core.sqlite_dos', broker_backend='core.zeromq') as profile:
        client = get_daemon_client()
        client.start_daemon(number_workers=1, timeout=DAEMON_TIMEOUT)
        try:
            yield profile
        finally:
            client.stop_daemon(wait=True, timeout=DAEMON_TIMEOUT)


def test_generate_job_through_the_daemon(daemon_profile, tmp_path, li_o_generate_inputs) -> None:
    code = get_or_create_code(get_or_create_localhost(workdir=str(tmp_path)))
    node = submit(GenerateCalculation, **li_o_generate_inputs(code, num_samples=2, seed=orm.Int(1)))
    deadline = time.monotonic() + TIMEOUT
    while not node.is_terminated and time.monotonic() < deadline:
        time.sleep(2)
    assert node.is_terminated, f'the daemon did not finish {node.process_label}<{node.pk}> in {TIMEOUT} s'
    assert node.is_finished_ok, node.exit_message
    labels = node.outputs.protostructures.get_list()
    assert labels and all(label.endswith(':Li-O') and '_225_' in label for label in labels)
    assert node.outputs.samples['meta']['checkpoint_sha256'] == node.inputs.checkpoint.sha256
