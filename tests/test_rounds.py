"""Rounds: rows from the workflow's own relaxations, fine-tuning on them in the graph, and the rounds work chain."""

from __future__ import annotations

import pytest
from aiida import orm
from aiida.engine import run_get_node
from aiida.manage.caching import enable_caching
from click.testing import CliRunner
from pymatgen.core import Lattice, Structure

from aiida_wyckoffdiff.cli import main
from aiida_wyckoffdiff.codes import get_or_create_code
from aiida_wyckoffdiff.data import COLUMNS, load_dataset, protostructure_of
from aiida_wyckoffdiff.exceptions import DataNotFoundError, NoRelaxationsError, ProtocolError
from aiida_wyckoffdiff.files import file_sha256
from aiida_wyckoffdiff.model.checkpoint import load_checkpoint
from aiida_wyckoffdiff.model.energy import MIN_ROWS
from aiida_wyckoffdiff.nodes import CheckpointData
from aiida_wyckoffdiff.provenance import lineage, structures_of
from aiida_wyckoffdiff.relaxation_rows import RelaxationSource, find_relaxations, training_rows
from aiida_wyckoffdiff.symmetry import structure_label
from aiida_wyckoffdiff.workchains.phase_diagram import RELAX_JOB_GIB, PhaseDiagramWorkChain
from aiida_wyckoffdiff.workchains.rounds import RoundsWorkChain

pytestmark = pytest.mark.usefixtures('aiida_profile_clean')

TINY_ROUNDS = {
    'rounds': 2,
    'allocate_spacegroups': True,
    'new_protostructures': True,
    'finetune': {'epochs': 1, 'dataset_share': 0.5, 'val_rows': 8},
    'phase_diagram': {'spacegroups': [225, 194], 'num_samples': 2, 'candidates': 1, 'hull_tolerance': 2.0,
                      'relax_memory_gib': RELAX_JOB_GIB, 'relax': {'settings': {'steps': 40, 'fmax': 0.1}}},
}
"""Two rounds of 4 samples each, short relaxations, one epoch on a few rows: about a minute on one core."""


def _antifluorite(a: float) -> orm.StructureData:
    structure = Structure.from_spacegroup(225, Lattice.cubic(a), ['Li', 'O'], [[0.25, 0.25, 0.25], [0, 0, 0]])
    return orm.StructureData(pymatgen=structure).store()


def _row(key: str, e_above_hull: float | None, **extra: object) -> dict[str, object]:
    return {'key': key, 'e_above_hull': e_above_hull, 'formation_energy_per_atom': e_above_hull, 'pruned': None,
            'potential': 'chgnet', **extra}


def test_rows_keep_the_lowest_energy_of_each_label() -> None:
    """Two relaxations to one protostructure give one row, the lower; failed and pruned ones give none."""
    structures = {key: _antifluorite(a) for key, a in (('a', 4.6), ('b', 4.7), ('c', 4.5), ('d', 4.65))}
    table = orm.List([_row('a', 0.30), _row('b', 0.05), _row('c', None), _row('d', 3.0, pruned='above 2.0')]).store()
    run = orm.WorkflowNode().store()
    report = training_rows([RelaxationSource(run, table, structures)])
    assert report.skipped == {'failed': 1, 'pruned': 1} and report.relaxed == 2
    (row,) = report.rows
    assert row['label'] == structure_label(structures['b'].get_pymatgen_structure()) == 'A2B_cF12_225_c_a:Li-O'
    assert row['e_above_hull'] == 0.05 and row['structure_pk'] == structures['b'].pk and row['relaxations'] == 2
    assert row['table_pk'] == table.pk and row['run_pk'] == run.pk and row['split'] == 'train'
    assert set(COLUMNS) <= row.keys() and protostructure_of(row).label == row['label']
    assert len(training_rows([RelaxationSource(run, table, structures)], include_pruned=True).rows) == 1
    mixed = orm.List([_row('a', 0.30), _row('b', 0.05, potential='sevenn')]).store()
    with pytest.raises(ValueError, match='chgnet, sevenn'):
        training_rows([RelaxationSource(run, mixed, structures)])
    assert training_rows([RelaxationSource(run, mixed, structures)], potential='sevenn').rows[0]['e_above_hull'] == 0.05


def test_no_relaxations_is_a_clear_error() -> None:
    with pytest.raises(NoRelaxationsError, match='no finished wyckoffdiff.phase_diagram run of Li-O'):
        find_relaxations(chemsys='Li-O')
    result = CliRunner().invoke(main, ['relaxation-rows', '--chemsys', 'Li-O'])
    assert result.exit_code == 1 and 'run one first' in result.output and 'Traceback' not in result.output


@pytest.mark.parametrize('protocol', list(RoundsWorkChain.get_available_protocols()))
def test_every_rounds_protocol_gives_a_builder(aiida_localhost, sample_dataset_path, protocol) -> None:
    """Each protocol names the phase-diagram protocol of its runs; the dataset is stored once, by content."""
    code = get_or_create_code(aiida_localhost)
    inputs = RoundsWorkChain.get_protocol_inputs(protocol)
    builder = RoundsWorkChain.get_builder_from_protocol(code, 'Li-O', protocol, dataset=sample_dataset_path)
    assert builder.rounds.value == inputs['rounds'] and builder.finetune.get_dict() == inputs['finetune']
    run_inputs = PhaseDiagramWorkChain.get_protocol_inputs(inputs['phase_diagram_protocol'])
    assert builder.phase_diagram.num_samples.value == run_inputs['num_samples']
    assert builder.phase_diagram.chemsys.value == 'Li-O'
    assert builder.phase_diagram.generate.checkpoint.kind == 'wyckoffdiff'
    assert builder.phase_diagram.generate.energy_screen.value == inputs['phase_diagram']['generate']['energy_screen'] > 1
    assert builder.dataset.base.attributes.get('sha256') == file_sha256(sample_dataset_path)
    again = RoundsWorkChain.get_builder_from_protocol(code, 'Li-O', protocol, dataset=sample_dataset_path)
    assert again.dataset.pk == builder.dataset.pk


def test_rounds_overrides_and_what_they_refuse(aiida_localhost, sample_dataset_path, tmp_path) -> None:
    code = get_or_create_code(aiida_localhost)
    overrides = {'phase_diagram_protocol': 'balanced', 'phase_diagram': {'seed': 3}}
    builder = RoundsWorkChain.get_builder_from_protocol(code, 'Li-O', overrides=overrides, dataset=sample_dataset_path)
    assert builder.phase_diagram.num_samples.value == 16 and builder.phase_diagram.seed.value == 3
    with pytest.raises(ProtocolError, match="no input 'samples'"):
        RoundsWorkChain.get_builder_from_protocol(code, 'Li-O', overrides={'phase_diagram': {'samples': 4}},
                                                  dataset=sample_dataset_path)
    with pytest.raises(ValueError, match='unknown fine-tuning settings epoch'):
        RoundsWorkChain.get_builder_from_protocol(code, 'Li-O', overrides={'finetune': {'epoch': 2}},
                                                  dataset=sample_dataset_path)
    with pytest.raises(ValueError, match='dataset_share'):
        RoundsWorkChain.get_builder_from_protocol(code, 'Li-O', overrides={'finetune': {'dataset_share': 1}},
                                                  dataset=sample_dataset_path)
    with pytest.raises(DataNotFoundError, match='run `wyckoffdiff data build` first'):
        RoundsWorkChain.get_builder_from_protocol(code, 'Li-O', dataset=tmp_path / 'absent.jsonl.gz')


def test_two_rounds_learn_from_their_relaxations(aiida_localhost, sample_dataset_path, tmp_path) -> None:
    code = get_or_create_code(aiida_localhost)
    builder = RoundsWorkChain.get_builder_from_protocol(code, 'Li-O', overrides=TINY_ROUNDS,
                                                        dataset=sample_dataset_path)
    _, node = run_get_node(builder)
    assert node.is_finished_ok, node.exit_message
    first, second = (node.base.links.get_outgoing(link_label_filter=f'round_{n}').one().node for n in (1, 2))
    shipped = builder.phase_diagram.generate.checkpoint
    tuned = node.outputs.checkpoints
    assert set(tuned) == {'round_1', 'round_2'} and len({shipped.sha256, *(c.sha256 for c in tuned.values())}) == 3
    # Round 2 sampled from round 1's checkpoint, fine-tuned one epoch further.
    generate_jobs = [job for job in second.called if job.process_label == 'GenerateCalculation']
    assert {job.inputs.checkpoint.pk for job in generate_jobs} == {tuned['round_1'].pk}
    assert load_checkpoint(_path(tuned['round_2'], tmp_path), 'cpu').epoch == \
        load_checkpoint(_path(shipped, tmp_path), 'cpu').epoch + 2
    # Round 2 shared its 4 samples among round 1's groups by round 1's table; its generate jobs drew exactly those.
    assert 'samples_per_spacegroup' not in first.inputs
    shares = second.inputs.samples_per_spacegroup
    allocation = shares.creator
    assert allocation.process_label == 'allocate_spacegroups' and allocation.inputs.table_1.pk == first.outputs.table.pk
    assert set(shares.get_dict()) == {'225', '194'} and sum(shares.get_dict().values()) == 4
    drawn = [group for job in generate_jobs for group in job.inputs.spacegroups.get_list()]
    assert {str(group): drawn.count(group) for group in set(drawn)} == {k: v for k, v in shares.get_dict().items() if v}
    assert {job.inputs.num_samples.value for job in generate_jobs} == {1}
    # ... and drew none of the protostructures round 1 requested, by a list made from round 1's table.
    requested = {row['label_requested'] for row in first.outputs.table.get_list() if row['label_requested']}
    (excluded,) = {job.inputs.exclude.pk for job in generate_jobs}
    assert set(orm.load_node(excluded).get_list()) == requested
    assert orm.load_node(excluded).creator.inputs.table_1.pk == first.outputs.table.pk
    assert not requested & set().union(*(job.outputs.protostructures.get_list() for job in generate_jobs))

    # Rows from round 1's run, found by QueryBuilder: its relaxed structures, labelled as the dataset is.
    rows = training_rows(find_relaxations(runs=[first.pk])).rows
    relaxed = {row['key']: row for row in first.outputs.table.get_list()
               if row['e_above_hull'] is not None and not row['pruned']}
    assert rows and len(rows) <= len(relaxed)
    for row in rows:
        structure = orm.load_node(row['structure_pk'])
        assert row['label'] == structure_label(structure.get_pymatgen_structure()) and row['run_pk'] == first.pk
        assert row['e_above_hull'] in {r['e_above_hull'] for r in relaxed.values()}
    arguments = ['relaxation-rows', '--run', str(first.pk), '--output', str(tmp_path / 'rows.jsonl.gz')]
    result = CliRunner().invoke(main, arguments)
    assert result.exit_code == 0, result.output
    assert sorted(load_dataset(tmp_path / 'rows.jsonl.gz')['label']) == sorted(row['label'] for row in rows)

    # The checkpoint's creator has the rows' sources as inputs: round 1's table and its relaxed structures.
    finetune = tuned['round_1'].creator
    assert finetune.process_type == 'aiida.calculations:wyckoffdiff.finetune'
    inputs = {link.link_label: link.node for link in finetune.base.links.get_incoming().all()}
    assert inputs['checkpoint'].pk == shipped.pk and inputs['dataset'].base.attributes.get('sha256')
    assert inputs['table_0'].pk == first.outputs.table.pk
    given = finetune.inputs.rows.get_list()
    assert {inputs[row['structure_input']].pk for row in given} == {row['structure_pk'] for row in rows}
    assert [row['label'] for row in given] == [row['label'] for row in rows]
    # Round 2 fine-tunes on the rows of both rounds, from round 1's checkpoint.
    later = tuned['round_2'].creator
    assert later.inputs.checkpoint.pk == tuned['round_1'].pk
    tables = {later.inputs[row['table_input']].pk for row in later.inputs.rows.get_list()}
    assert tables <= {first.outputs.table.pk, second.outputs.table.pk}
    # Its checkpoint carries an energy head only where the rows are enough to fit one, as its report says (these
    # rounds are too small; tests/model/test_energy.py fits one through the same fine-tuning).
    head = load_checkpoint(_path(tuned['round_2'], tmp_path), 'cpu').model.energy_head
    reported = later.outputs.report['energy_head']
    assert (head is None) == (len(later.inputs.rows.get_list()) < MIN_ROWS) == (reported is None)

    # A round-2 structure's lineage goes through its checkpoint to round 1's relaxations.
    structure = next(n for job in second.called if 'relaxed' in job.outputs for key, n in job.outputs.relaxed.items()
                     if not key.startswith('reference_'))
    steps = lineage(structure)
    names = [step['process'] for step in steps]
    assert names[-2:] == ['wyckoffdiff.generate', 'wyckoffdiff.finetune'], names
    assert steps[-2]['checkpoint_pk'] == tuned['round_1'].pk
    assert steps[-1]['runs'] == [first.pk] and steps[-1]['previous_checkpoint_pk'] == shipped.pk
    round_1_relaxed = {n.pk for job in first.called if 'relaxed' in job.outputs for n in job.outputs.relaxed.values()}
    assert set(steps[-1]['relaxed_pks']) <= round_1_relaxed
    result = CliRunner().invoke(main, ['lineage', str(structure.pk)])
    assert result.exit_code == 0 and 'wyckoffdiff.finetune' in result.output, result.output

    # The per-round table, and the last round's hull structures.
    table = node.outputs.rounds.get_list()
    assert [row['round'] for row in table] == [1, 2] and [row['run_pk'] for row in table] == [first.pk, second.pk]
    assert [row['hits'] for row in table] == [len(structures_of(first)), len(structures_of(second))]
    assert all(row['wall_seconds'] > 0 and row['rows'] > 0 and row['median_e_above_hull'] is not None for row in table)
    assert {n.pk for n in structures_of(node).values()} == {n.pk for n in structures_of(second).values()}

    # Relaunched with caching on, nothing is relaxed or fine-tuned again.
    with enable_caching():
        _, again = run_get_node(builder)
    assert again.is_finished_ok, again.exit_message
    repeated = {n.pk: n.process_label for n in again.called_descendants
                if n.process_label in ('GenerateCalculation', 'RelaxCalculation', 'finetune_on_rows')}
    assert len(repeated) == 6, repeated  # per round one generate job, one relax job and one fine-tuning
    assert not [pk for pk in repeated if not orm.load_node(pk).base.caching.is_created_from_cache], repeated


def _path(checkpoint: CheckpointData, folder):
    path = folder / f'{checkpoint.pk}.pt'
    path.write_bytes(checkpoint.get_content(mode='rb'))
    return path
