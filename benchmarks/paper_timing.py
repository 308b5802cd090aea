"""The paper's Table 1 on this machine: 16 Li-O samples to CIFs, then relaxed; and where a scan's time went.

Part 1 (always): 16 Li-O protostructures from the shipped checkpoint at e_above_hull = 0, one in each of the 16
most frequent space groups, realized with PyXtal and written as CIFs, then relaxed with CHGNet at the examples'
settings (150 FIRE steps at most, fmax 0.1 eV/Å). Prints seconds for each stage, cold (imports and weights
included, as a user would wait) and the model's own sampling time. The paper, on a V100: 34 s protostructure
generation + 26 s structure realization = 60 s for WyckoffDiff, 366 s for MatterGen (no relaxation in either).

Part 2 (``--workchain PK``, in a profile that holds a finished ``wyckoffdiff.phase_diagram`` run): the run's
wall time split by stage from the provenance graph, and the AiiDA overhead: time in the workflow that no
computation accounts for (process launches, job submission and polling, storing nodes, CLI start-up).

    python benchmarks/paper_timing.py [--device cpu] [--threads 2] [--skip-relax]
    verdi run benchmarks/paper_timing.py --workchain PK --skip-plain
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

EXAMPLE_RELAXATION = {'steps': 150, 'fmax': 0.1}


def plain_pipeline(device: str | None, relax: bool) -> None:
    """Time generate -> realize (CIFs) -> relax for 16 Li-O samples through the plain Python API."""
    started = time.perf_counter()
    import torch

    from aiida_wyckoffdiff.data import training_spacegroups
    from aiida_wyckoffdiff.model.checkpoint import load_checkpoint, select_device, shipped_checkpoint_path
    from aiida_wyckoffdiff.model.config import SamplingConfig
    from aiida_wyckoffdiff.model.sampling import GenerationRequest, generate
    from aiida_wyckoffdiff.realize import realize_many

    checkpoint = load_checkpoint(shipped_checkpoint_path(), select_device(device))
    request = GenerationRequest(('Li', 'O'), tuple(training_spacegroups(16)), e_above_hull=0.0, num_samples=16)
    result = generate(checkpoint.model, request, SamplingConfig(), torch.Generator().manual_seed(0))
    generated = time.perf_counter()
    labels = [sample.protostructure.label for sample in result.samples]
    with tempfile.TemporaryDirectory() as folder:
        realized = realize_many(labels, seed=0, progress=False)
        for index, outcome in enumerate(realized):
            if outcome.ok:
                outcome.structure.to(filename=str(Path(folder) / f'sample_{index:02d}.cif'))
    written = time.perf_counter()
    structures = [outcome.structure for outcome in realized if outcome.ok]
    print(f'machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, '
          f'device {select_device(device)}, load average {os.getloadavg()[0]:.1f}')
    print(f'{"stage":<44} {"seconds":>8}')
    print(f'{"protostructure generation (cold: weights)":<44} {generated - started:8.1f}')
    print(f'{"  of which sampling 16 (model only)":<44} {result.seconds:8.1f}')
    print(f'{f"structure realization, {len(structures)}/16 CIFs (PyXtal)":<44} {written - generated:8.1f}')
    print(f'{"generation + realization (paper: 60 s, V100)":<44} {written - started:8.1f}')
    if relax:
        from aiida_wyckoffdiff.potentials import load_potential
        from aiida_wyckoffdiff.relax import RelaxSettings, relax_structures

        potential = load_potential('chgnet', device=str(select_device(device)))
        loaded = time.perf_counter()
        outcomes = relax_structures(structures, potential, RelaxSettings(**EXAMPLE_RELAXATION))
        relaxed = time.perf_counter()
        converged = sum(outcome.converged for outcome in outcomes)
        print(f'{"CHGNet loading":<44} {loaded - written:8.1f}')
        print(f'{f"relaxation, {converged}/{len(outcomes)} converged":<44} {relaxed - loaded:8.1f}')
        print(f'{"total to relaxed structures":<44} {relaxed - started:8.1f}')


def workchain_breakdown(pk: int) -> None:
    """Split a finished phase-diagram run's wall time by stage and show what AiiDA itself cost."""
    from aiida import orm

    node = orm.load_node(pk)
    processes = sorted(node.called_descendants, key=lambda n: n.ctime)
    end = max(n.mtime for n in [node, *processes])
    wall = (end - node.ctime).total_seconds()

    def span(label: str) -> tuple[int, float]:
        """Number of processes with this label and the seconds from the first start to the last end."""
        chosen = [n for n in processes if n.process_label == label]
        if not chosen:
            return 0, 0.0
        return len(chosen), (max(n.mtime for n in chosen) - min(n.ctime for n in chosen)).total_seconds()

    sampling = sum(job.outputs.samples['meta']['seconds'] for job in processes
                   if job.process_label == 'GenerateCalculation' and 'samples' in job.outputs)
    samples = sum(len(job.outputs.protostructures) for job in processes
                  if job.process_label == 'GenerateCalculation' and 'protostructures' in job.outputs)
    print(f'PhaseDiagramWorkChain<{pk}> {node.inputs.chemsys.value}: {samples} samples, {len(processes)} processes, '
          f'wall {wall:.0f} s')
    print(f'{"stage":<36} {"processes":>9} {"seconds":>8}')
    stages = 0.0
    for label in ('GenerateCalculation', 'realize_protostructures', 'elemental_reference_structures',
                  'RelaxCalculation', 'assemble_hull'):
        count, seconds = span(label)
        stages += seconds
        print(f'{label:<36} {count:>9} {seconds:8.1f}')
    print(f'{"  model sampling inside generate jobs":<36} {"":>9} {sampling:8.1f}')
    print(f'{"between stages (workflow steps)":<36} {"":>9} {wall - stages:8.1f}')
    _, generate_span = span('GenerateCalculation')
    print(f'{"AiiDA + CLI start-up in generate jobs":<36} {"":>9} {generate_span - sampling:8.1f}')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--device', help='default: CUDA when present, else CPU')
    parser.add_argument('--threads', type=int, default=2, help='torch CPU threads')
    parser.add_argument('--skip-relax', action='store_true', help='time generation and realization only')
    parser.add_argument('--skip-plain', action='store_true', help='only the --workchain breakdown')
    parser.add_argument('--workchain', type=int, help='pk of a finished wyckoffdiff.phase_diagram run')
    options = parser.parse_args()
    import torch

    torch.set_num_threads(options.threads)
    if not options.skip_plain:
        plain_pipeline(options.device, relax=not options.skip_relax)
    if options.workchain is not None:
        workchain_breakdown(options.workchain)


if __name__ == '__main__':
    main()
