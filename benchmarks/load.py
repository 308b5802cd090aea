"""Load: the paper-size scan (20 space groups x 64 samples) through a two-worker daemon, on SQLite and PostgreSQL.

For each profile kind this submits ``wyckoffdiff.phase_diagram`` for Li-O with the shipped model and
CHGNet (offline), at two sizes, and prints per run: structures, processes, processes per minute,
nodes stored, database and repository size, and the peak resident memory of the daemon workers
(the CalcJobs' own processes are not the daemon's and are not counted). The two sizes show that the
number of processes follows the number of batches, not of structures.

Relaxing 1280 structures to convergence with CHGNet takes hours on two cores, so each structure
gets ``--relax-steps`` optimizer steps (default 2) and each sample ``--diffusion-steps`` reverse
steps (default 10 instead of 100): the load on the daemon and the database is the same (every
structure is still generated, realized, relaxed, stored and placed on the hull), only the jobs,
which run outside the daemon, are shorter.

Needs PostgreSQL and RabbitMQ (``scripts/services.sh``). Each scan gets a new profile in a temporary
AIIDA_PATH; PostgreSQL databases are dropped after their scan. Run: ``.venv/bin/python benchmarks/load.py`` (about an
hour on an idle 2-core machine); ``--profiles sqlite --sizes 2`` for a quick look.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

os.environ['PATH'] = f'{Path(sys.executable).parent}{os.pathsep}{os.environ.get("PATH", "")}'  # the daemon's verdi
WORKERS = 2


def _tree_size(path: Path) -> int:
    return sum(item.stat().st_size for item in path.rglob('*') if item.is_file())


class PeakWorkerMemory(threading.Thread):
    """Samples the summed resident memory of the daemon's workers every second; ``peak`` holds the largest sum.

    The worker pids are asked for once, here: the daemon client's socket must not be shared with this thread.
    """

    def __init__(self, client) -> None:  # noqa: ANN001 - a DaemonClient
        super().__init__(daemon=True)
        self.pids = [int(pid) for pid in client.get_worker_info()['info']]
        self.peak = 0
        self.stopped = threading.Event()

    def run(self) -> None:
        import psutil

        while not self.stopped.wait(1.0):
            total = 0
            for pid in self.pids:
                try:
                    total += psutil.Process(pid).memory_info().rss
                except psutil.NoSuchProcess:
                    pass
            self.peak = max(self.peak, total)


@dataclass
class Storage:
    """A new profile's storage: how big its database and its file repository are, and how to remove it."""

    database_bytes: Callable[[], int]
    repository: Path
    remove: Callable[[], None]


def _new_profile(config, kind: str, root: Path) -> tuple:  # noqa: ANN001 - aiida's Config
    """A profile of ``kind`` with the RabbitMQ broker, and its :class:`Storage`."""
    from aiida.manage.configuration import create_profile

    from aiida_wyckoffdiff.services import PostgresServer, rabbitmq_broker_config

    name = f'load_{kind}_{secrets.token_hex(4)}'
    common = {'name': name, 'broker_backend': 'core.rabbitmq', 'broker_config': rabbitmq_broker_config(),
              'email': 'load@localhost'}
    if kind == 'postgresql':
        server = PostgresServer.from_environment()
        storage = {**server.create_database(name), 'repository_uri': (root / name / 'repository').as_uri()}
        profile = create_profile(config, storage_backend='core.psql_dos', storage_config=storage, **common)
        return profile, Storage(lambda: server.database_size(name), root / name / 'repository',
                                lambda: server.drop_database(name))
    folder = root / name / 'storage'
    profile = create_profile(config, storage_backend='core.sqlite_dos', storage_config={'filepath': str(folder)}, **common)
    return profile, Storage(lambda: (folder / 'database.sqlite').stat().st_size, folder / 'container', lambda: None)


def _quiet_broker_warning(config, profile) -> None:  # noqa: ANN001 - aiida's Config and Profile
    """aiida warns about every RabbitMQ >= 3.8.15; services.sh switched off the timeout the warning is about."""
    profile.set_option('warnings.rabbitmq_version', False)
    config.update_profile(profile)
    config.store()


def _scan(samples: int, args: argparse.Namespace, client) -> dict[str, float]:  # noqa: ANN001 - a DaemonClient
    from aiida import orm
    from aiida.engine import submit

    from aiida_wyckoffdiff.launch import phase_diagram_builder

    builder = phase_diagram_builder('Li-O', num_samples=samples,
                                    relax_settings={'steps': args.relax_steps, 'fmax': 0.1})
    builder.structures_per_job = args.structures_per_job
    builder.steps = args.diffusion_steps
    memory = PeakWorkerMemory(client)
    memory.start()
    start = time.monotonic()
    node = submit(builder)
    try:
        while not node.is_terminated:
            time.sleep(2)
    except BaseException:
        # The jobs run outside the daemon and would go on after it stops: kill the scan, and with it its jobs.
        from aiida.engine.processes.control import kill_processes

        kill_processes([node], timeout=120)
        raise
    finally:
        memory.stopped.set()
        memory.join()
    minutes = (time.monotonic() - start) / 60
    if not node.is_finished_ok:
        raise SystemExit(f'{node.process_label}<{node.pk}> failed: [{node.exit_status}] {node.exit_message}')
    called = [process.process_label for process in node.called_descendants]  # CALL links, at any depth
    processes = 1 + len(called)
    return {
        'samples': samples,
        'structures': len(node.outputs.table.get_list()),
        'generate jobs': called.count('GenerateCalculation'),
        'relax jobs': called.count('RelaxCalculation'),
        'processes': processes,
        'minutes': minutes,
        'processes/min': processes / minutes,
        'nodes': orm.QueryBuilder().append(orm.Node).count(),
        'worker peak MiB': memory.peak / 2**20,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--profiles', nargs='+', choices=('sqlite', 'postgresql'), default=['sqlite', 'postgresql'])
    parser.add_argument('--sizes', nargs='+', type=int, default=[8, 64], help='Samples per space group, one scan each.')
    parser.add_argument('--relax-steps', type=int, default=2, help='Optimizer steps per structure (default 2).')
    parser.add_argument('--diffusion-steps', type=int, default=10,
                        help='Reverse diffusion steps per sample (default 10; the workflow default is 100).')
    parser.add_argument('--structures-per-job', type=int, default=256, help='Relax batch size (default 256).')
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix='wyckoffdiff-load-'))
    os.environ['AIIDA_PATH'] = str(root)  # before aiida reads its configuration
    from aiida.engine.daemon.client import get_daemon_client
    from aiida.manage import get_manager
    from aiida.manage.configuration import get_config, load_profile

    from aiida_wyckoffdiff.codes import get_or_create_code, get_or_create_localhost

    print(f'Li-O, 20 space groups, shipped model with {args.diffusion_steps} reverse steps, '
          f'CHGNet with {args.relax_steps} steps per structure, '
          f'{args.structures_per_job} structures per relax job, {WORKERS} daemon workers, RabbitMQ broker, {os.cpu_count()} cores')
    config = get_config(create=True)
    for samples in args.sizes:
        for kind in args.profiles:  # a fresh profile per scan, so that the sizes are the scan's own
            profile, storage = _new_profile(config, kind, root)
            _quiet_broker_warning(config, profile)
            load_profile(profile.name, allow_switch=True)
            get_or_create_code(get_or_create_localhost(workdir=str(root / profile.name / 'work')))
            client = get_daemon_client(profile.name)
            client.start_daemon(number_workers=WORKERS, timeout=120)
            try:
                row = _scan(samples, args, client)
            finally:
                client.stop_daemon(wait=True, timeout=120)
            row['database MiB'] = storage.database_bytes() / 2**20
            row['repository MiB'] = _tree_size(storage.repository) / 2**20
            get_manager().unload_profile()  # close this process's connections before the database goes
            storage.remove()
            print(f'{kind:>10}  ' + '  '.join(f'{key} {value:.1f}' if isinstance(value, float) else f'{key} {value}'
                                              for key, value in row.items()), flush=True)


if __name__ == '__main__':
    main()
