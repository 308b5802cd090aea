"""``wyckoffdiff relax``: relax structure files or realized protostructure labels with one loaded potential."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import click

from ..files import verify_sha256
from ..potentials import DEFAULT_RELAXER, RELAXERS
from ..relax import OPTIMIZERS, RelaxSettings, default_workers
from .base import SHA256_OPTION, main


def _read_input(item: str) -> Any:  # -> Structure | Protostructure
    """A structure file read, or a protostructure label parsed: any bad INPUT is refused before the potential loads."""
    from ..exceptions import StructureFileError
    from ..symmetry import Protostructure
    from .structures import read_structure

    path = Path(item)
    if path.is_file():
        return read_structure(path)
    if ':' in item:  # every label has one: FORMULA_PEARSON_SPACEGROUP_WYCKOFFS:CHEMSYS
        return Protostructure.from_label(item)
    kind = 'a directory, not a structure file' if path.is_dir() else 'no such file'
    raise StructureFileError(f'{item}: {kind}, nor a protostructure label (e.g. "A2BC4_cF56_227_c_b_e:Al-Mg-O")')


def _starting_structures(
    inputs: tuple[str, ...], read: list[Any], potential: Any, candidates: int, seed: int,
    alternatives: dict[str, list[tuple[str, Any]]], workers: int, cores: int | None, realize_method: str = 'template',
) -> tuple[list, list[dict[str, Any]]]:
    """Realize the labels among the ``read`` inputs (best of ``candidates``); choose between a file and its
    ``alternatives`` (``(file, structure)`` pairs; the lowest after the same pre-relaxation). Returns structures and
    a record per input."""
    from ..candidates import choose_among, choose_realizations
    from ..symmetry import Protostructure
    from ..templates import shipped_templates

    structures, records, labels = [], [], {}
    for position, (item, value) in enumerate(zip(inputs, read, strict=True)):
        if isinstance(value, Protostructure):
            labels[position] = value
            structures.append(None)
            records.append({'input': item, 'label_requested': value.label})
        else:
            structures.append(value)
            records.append({'input': item, 'label_requested': None})
    templates = shipped_templates() if realize_method == 'template' else None
    choices = choose_realizations(list(labels.values()), potential, candidates=candidates, seed=seed,
                                  workers=workers, cores=cores, templates=templates) if labels else []
    for position, choice in zip(labels, choices):
        structures[position] = choice.structure
        records[position].update(candidate_scores=choice.scores, candidate_prerelax_steps=choice.steps,
                                 realization_failure=choice.reason)
    grouped = [position for position, item in enumerate(inputs) if alternatives.get(item)]
    starts = [[structures[position], *(s for _, s in alternatives[inputs[position]])] for position in grouped]
    choices = choose_among(starts, potential, workers=workers, cores=cores) if grouped else []
    for position, choice in zip(grouped, choices):
        group = [inputs[position], *(f for f, _ in alternatives[inputs[position]])]
        structures[position] = choice.structure
        records[position].update(candidate_scores=choice.scores, candidate_prerelax_steps=choice.steps,
                                 candidates=[Path(f).stem for f in group],
                                 chosen=None if choice.chosen is None else Path(group[choice.chosen]).stem,
                                 realization_failure=choice.reason)
    return structures, records


def _read_alternatives(path: Path | None, inputs: tuple[str, ...]) -> dict[str, list[tuple[str, Any]]]:
    """``{input file: [(other candidate file, its structure)]}`` from JSON, each key checked to be an input."""
    from .structures import read_structure

    if path is None:
        return {}
    try:
        alternatives = json.loads(path.read_text())
    except json.JSONDecodeError as exception:
        raise click.BadParameter(f'{path} is not JSON: {exception}', param_hint='--alternatives') from None
    if not isinstance(alternatives, dict) or not all(isinstance(v, list) for v in alternatives.values()):
        raise click.BadParameter(f'{path} must map input files to lists of files', param_hint='--alternatives')
    for item, files in alternatives.items():
        if item not in inputs:
            raise click.BadParameter(f'{path}: {item} is not one of the INPUTs', param_hint='--alternatives')
        if missing := [f for f in files if not Path(f).is_file()]:
            raise click.BadParameter(f'{path}: no such file {missing[0]}', param_hint='--alternatives')
    return {item: [(f, read_structure(Path(f))) for f in files] for item, files in alternatives.items()}


def _trajectory_name(item: str, position: int) -> str:
    """A file's stem, or ``input_N`` for a label (labels hold ``:`` and other characters unfit for file names)."""
    return Path(item).stem if Path(item).is_file() else f'input_{position}'


@main.command()
@click.argument('inputs', nargs=-1, required=True, metavar='INPUT...')
@click.option(
    '--relaxer',
    type=click.Choice(list(RELAXERS)),
    default=DEFAULT_RELAXER,
    show_default=True,
    help='Interatomic potential.',
)
@click.option(
    '--checkpoint', help='Weights file (MatterSim: also 1M or 5M; default $WYCKOFFDIFF_MATTERSIM_CHECKPOINT or 1M).'
)
@SHA256_OPTION
@click.option(
    '--output', '-o', type=click.Path(dir_okay=False, path_type=Path), default='relaxed.jsonl', show_default=True,
    help='Results, one JSON line per finished structure.',
)
@click.option('--optimizer', type=click.Choice(OPTIMIZERS), default=RelaxSettings.optimizer, show_default=True)
@click.option('--fmax', type=float, default=RelaxSettings.fmax, show_default=True, help='Force criterion in eV/Å.')
@click.option('--steps', type=click.IntRange(min=0), default=RelaxSettings.steps, show_default=True, help='Optimizer steps at most, per stage.')
@click.option(
    '--fix-symmetry/--free', default=False, show_default=True, help='Keep the starting space group (ASE FixSymmetry).'
)
@click.option('--free-within', type=float, help='After --fix-symmetry, relax freely those within this many eV/atom of the hull.')
@click.option('--prune-above', type=float, help='Stop structures more than this many eV/atom above the hull ...')
@click.option('--prune-after', type=click.IntRange(min=0), default=RelaxSettings.prune_after, show_default=True, help='... after this many steps.')
@click.option('--bfgs-alpha', type=float, default=RelaxSettings.bfgs_alpha, show_default=True,
              help="BFGS's first guess of the Hessian in eV/Å² (ASE's alpha); the staged protocol's is lower.")
@click.option('--cell-stiffness', type=float,
              help="A guess of the cell's stiffness in eV/Å³ that scales its coordinates for the optimizer; the staged "
                   "protocol's is 0.9 [default: ASE's scaling].")
@click.option(
    '--elemental-energies', type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help='JSON {element: eV/atom} to measure the hull against; default: relax the MP ground states first.',
)
@click.option(
    '--cores', type=click.IntRange(min=1), show_default='all this process may run on',
    help='Cores this job may use (torch threads in all): fewer than the machine\'s where relax jobs share it.',
)
@click.option(
    '--workers', type=click.IntRange(min=1), show_default='one per core',
    help='Processes relaxing one structure at a time each, sharing the cores as torch threads.',
)
@click.option(
    '--candidates',
    '-k',
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help='For a LABEL: PyXtal realizations scored by a short pre-relaxation; the best is relaxed. A LABEL with a '
    'template (--realize-method template) is realized once, from the most similar.',
)
@click.option(
    '--alternatives', type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help='JSON {INPUT file: [other candidate files]}: the lowest after a short pre-relaxation is relaxed.',
)
@click.option('--seed', type=int, default=0, show_default=True, help='Seed of the realizations.')
@click.option('--realize-method', type=click.Choice(['template', 'pyxtal']), default='template', show_default=True,
              help='For a LABEL: from the most similar training crystals of its prototype (PyXtal where none has it), '
                   'or always PyXtal.')
@click.option('--device', default='cpu', show_default=True)
@click.option('--trajectory-dir', type=click.Path(file_okay=False, path_type=Path), help='Write one ASE trajectory per input here (NAME.traj).')
def relax(
    inputs: tuple[str, ...],
    relaxer: str,
    checkpoint: str | None,
    checkpoint_sha256: str | None,
    output: Path,
    optimizer: str,
    fmax: float,
    steps: int,
    fix_symmetry: bool,
    free_within: float | None,
    prune_above: float | None,
    prune_after: int,
    bfgs_alpha: float,
    cell_stiffness: float | None,
    elemental_energies: Path | None,
    cores: int | None,
    workers: int | None,
    candidates: int,
    alternatives: Path | None,
    seed: int,
    realize_method: str,
    device: str,
    trajectory_dir: Path | None,
) -> None:
    """Relax each INPUT: a structure file (CIF, POSCAR, ...) or a protostructure label to realize first.

    One bad input (overlapping atoms, an element the potential lacks, a failed realization) gets a reason in the
    output; the others are relaxed. Each finished structure is appended to the output as one line, which ends with a
    ``complete`` line, so a job killed midway leaves every finished structure behind. The staged protocol:
    ``--fix-symmetry --free-within 0.5 --prune-above 2.0 --bfgs-alpha 20 --cell-stiffness 0.9`` (docs/relaxation.md).
    """
    from tqdm import tqdm

    from ..hull import MPHull
    from ..potentials import load_potential
    from ..relax import RelaxOutcome, quiet_cell_filter_warnings, relax_all, single_threaded_linear_algebra
    from ..results_file import ResultsWriter

    quiet_cell_filter_warnings()
    single_threaded_linear_algebra()
    if output.suffix == '.json':
        click.echo(f'warning: {output} will hold JSON lines, one per structure, which JSON tools do not read: '
                   'name it .jsonl', err=True)
    workers = workers or default_workers(cores)
    try:
        settings = RelaxSettings(optimizer=optimizer, fmax=fmax, steps=steps, fix_symmetry=fix_symmetry,
                                 free_within=free_within, prune_above=prune_above, prune_after=prune_after,
                                 bfgs_alpha=bfgs_alpha, cell_stiffness=cell_stiffness)
    except ValueError as exception:
        raise click.UsageError(str(exception)) from None
    elemental = _read_elemental(elemental_energies) if elemental_energies else None
    if checkpoint_sha256 is not None and (checkpoint is None or not Path(checkpoint).is_file()):
        raise click.UsageError('--checkpoint-sha256 needs --checkpoint FILE')
    read = [_read_input(item) for item in inputs]
    choose_from = _read_alternatives(alternatives, inputs)
    if checkpoint_sha256 is not None:
        verify_sha256(checkpoint, checkpoint_sha256)
    potential = load_potential(relaxer, checkpoint, device=device)
    structures, records = _starting_structures(inputs, read, potential, candidates, seed, choose_from, workers, cores,
                                               realize_method)
    positions = [position for position, structure in enumerate(structures) if structure is not None]
    header = {'settings': asdict(settings), 'device': device, 'workers': workers, 'cores': cores, 'inputs': len(inputs),
              **potential.describe()}
    writer = ResultsWriter(output, header)
    failed = 0
    for position, record in enumerate(records):
        if structures[position] is None:
            outcome = RelaxOutcome(position, '', potential.name, potential.checkpoint_sha256,
                                   reason=record['realization_failure'])
            writer.write('structure', outcome.as_dict() | record)
            failed += 1
    trajectories = None
    if trajectory_dir is not None:
        trajectory_dir.mkdir(parents=True, exist_ok=True)
        names = [_trajectory_name(inputs[position], position) for position in positions]
        trajectories = [trajectory_dir / f'{name}.traj' for name in names]

    with tqdm(total=len(positions), desc=f'relaxing ({relaxer})', unit='structure') as bar:

        def record(outcome: RelaxOutcome) -> None:
            nonlocal failed
            position = positions[outcome.index]
            outcome.index = position
            writer.write('structure', outcome.as_dict() | records[position])
            failed += not outcome.ok
            bar.update(1)

        hull = MPHull(apply_mp2020=not potential.includes_mp2020, elemental=elemental)
        run = relax_all([structures[p] for p in positions], potential, settings, workers=workers, cores=cores, device=device,
                        hull=hull, on_finished=record, trajectories=trajectories)
    if run.references or elemental is not None:
        references = {element: outcome.as_dict() | {'structure': None} for element, outcome in run.references.items()}
        writer.write('elemental', {'elemental_energies': run.elemental or elemental, 'references': references})
    writer.close(complete=True)
    pruned = sum(outcome.pruned is not None for outcome in run.outcomes)
    click.echo(f'wrote {output}: {len(inputs) - failed} relaxed ({pruned} pruned), {failed} failed', err=True)


def _read_elemental(path: Path) -> dict[str, float]:
    """``{element: eV/atom}`` from a JSON file, refused with the reason when it is anything else."""
    try:
        energies = json.loads(path.read_text())
    except json.JSONDecodeError as exception:
        raise click.BadParameter(f'{path} is not JSON: {exception}', param_hint='--elemental-energies') from None
    if not isinstance(energies, dict) or not all(isinstance(v, (int, float)) for v in energies.values()):
        raise click.BadParameter(f'{path} must map elements to eV/atom', param_hint='--elemental-energies')
    return {str(element): float(energy) for element, energy in energies.items()}
