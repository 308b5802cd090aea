"""The phase-diagram WorkChain end to end on localhost: shipped model, CHGNet, real CalcJobs."""

from __future__ import annotations

import pytest
from aiida import orm
from aiida.engine import run_get_node

from aiida_wyckoffdiff.calculations.relax import candidate_of
from aiida_wyckoffdiff.codes import get_or_create_code
from aiida_wyckoffdiff.data import build_dataset, load_dataset, split_of
from aiida_wyckoffdiff.launch import phase_diagram_builder
from aiida_wyckoffdiff.model.config import SamplingConfig
from aiida_wyckoffdiff.provenance import SAMPLE_ORIGINS, lineage, potential_e_above_hull, structures_of
from aiida_wyckoffdiff.relax import available_cores
from aiida_wyckoffdiff.reporting import format_report, scan_report
from aiida_wyckoffdiff.workchains.phase_diagram import RELAX_JOB_GIB

pytestmark = pytest.mark.usefixtures('aiida_profile_clean')

SMALL_RELAXATION = {'steps': 40, 'fmax': 0.1}


@pytest.fixture
def code(aiida_localhost) -> orm.InstalledCode:
    return get_or_create_code(aiida_localhost)


def test_li_o_phase_diagram_end_to_end(code, sample_dir, tmp_path) -> None:
    builder = phase_diagram_builder('Li-O', code=code.full_label, spacegroups=[225, 194, 12], num_samples=2,
                                    relax_settings=SMALL_RELAXATION, structures_per_job=4)
    builder.hull_tolerance = 2.0  # eV/atom: wide, so that a short relaxation still leaves hull structures to check
    builder.relax_memory_gib = RELAX_JOB_GIB  # memory for one relax job at a time
    builder.candidates = 2  # two PyXtal draws of a protostructure without a template; the job keeps the lower
    builder.random_samples = 1  # random protostructures, some of which no training crystal's prototype fits
    _, node = run_get_node(builder)
    assert node.is_finished_ok, node.exit_message
    table = node.outputs.table.get_list()
    assert table and all(row['chemsys'] in ('Li-O', 'Li', 'O') for row in table)
    assert {row['spacegroup_requested'] for row in table} <= {225, 194, 12}
    relaxed = [row for row in table if row['formation_energy_per_atom'] is not None]
    assert relaxed, table
    realized = sum(1 for entry in node.outputs.realization.get_list() if entry['ok'])
    relax_batches = [n for n in node.called if n.process_label == 'RelaxBaseWorkChain']
    assert len(relax_batches) == -(-realized // 4)  # 4 structures per job, each job with the Li and O references
    jobs = sorted(relax_batches, key=lambda job: job.ctime)
    assert len(jobs) > 1 and all(later.ctime > earlier.mtime for earlier, later in zip(jobs, jobs[1:]))
    # One job at a time on this machine (direct scheduler, local transport): each may use all its cores.
    assert {job.inputs.relax.settings['cores'] for job in jobs} == {available_cores()}
    hull = node.outputs.hull_structures
    tolerance = node.inputs.hull_tolerance.value
    assert set(hull) == {row['key'] for row in relaxed if row['e_above_hull'] <= tolerance and not row['duplicate_of']}
    # The default is the staged protocol: a symmetric stage first, for every structure, recorded per job.
    results = [job.outputs.results['structures'] for job in relax_batches]
    # A protostructure with a template was realized once, from it; one without, twice by PyXtal: both candidates went
    # to the same job, which recorded both scores and its choice.
    generated = {key: result for batch in results for key, result in batch.items() if not key.startswith('reference_')}
    realization = [entry for entry in node.outputs.realization.get_list() if entry['ok']]
    templated = {entry['output'] for entry in realization if 'template' in entry['realized_by'][entry['output']]}
    assert templated and all(not entry['alternatives'] for entry in realization if entry['output'] in templated)
    pairs = {key: result for key, result in generated.items() if len(result.get('candidate_scores', [])) == 2}
    assert pairs and all(result['chosen'] in (key, f'{key}_c1') and key not in templated
                         for key, result in pairs.items()), generated
    assert all(result['stages'][0]['fix_symmetry'] for batch in results for key, result in batch.items()
               if not key.startswith('reference_') and result['stages']), results
    assert any(name.endswith('_png') for name in node.outputs.plots) and 'energy_distribution_png' in node.outputs.plots
    assert set(node.outputs.cifs.base.repository.list_object_names()) == {f"{row['key']}.cif" for row in relaxed}
    group = orm.load_group('wyckoffdiff/Li-O')
    assert {n.pk for n in group.nodes} == {n.pk for n in hull.values()}
    # Every relaxed structure traces back to its conditions, seed and checkpoint, through whichever candidate its job kept.
    relaxed_nodes = {key: structure for job in node.called if 'relaxed' in job.outputs for key, structure in job.outputs.relaxed.items()}
    lineages = {row['key']: {step['process']: step for step in lineage(relaxed_nodes[row['key']])} for row in relaxed}
    report_of = {entry['output']: entry for entry in node.outputs.realization.get_list() if entry['ok']}
    assert any('template' in by for entry in report_of.values() for by in entry['realized_by'].values())
    for row in relaxed:
        key, steps = row['key'], lineages[row['key']]
        chosen = generated[key].get('chosen', key)
        assert steps['wyckoffdiff.realize']['output'] == chosen  # the lineage goes through the candidate relaxed
        realized_by = report_of[candidate_of(chosen)[0]]['realized_by'][chosen]
        if 'template' in realized_by:  # the geometry of a training crystal, an input of the realization
            assert steps['wyckoffdiff.realize']['realized'] == f"from {realized_by['template']} (train split)"
            assert split_of(realized_by['template']) == 'train'
        else:
            assert steps['wyckoffdiff.realize']['realized'] == f"by PyXtal, seed {realized_by['seed']}"
        assert steps['wyckoffdiff.relax'].get('chosen', key) == chosen
        assert steps['wyckoffdiff.relax']['relaxer'] == 'chgnet'
        assert steps['wyckoffdiff.realize']['label'] == row['label_requested']
        assert ('wyckoffdiff.generate' in steps) != ('wyckoffdiff.random' in steps), steps
    # How each of the model's protostructures was come by: the library share (known_prototypes) or a chain.
    origins = {steps['wyckoffdiff.generate']['origin'] for steps in lineages.values() if 'wyckoffdiff.generate' in steps}
    assert None not in origins and SAMPLE_ORIGINS['library'] in ' '.join(origins)
    modelled = next(row for row in relaxed if 'wyckoffdiff.generate' in lineages[row['key']])
    structure = relaxed_nodes[modelled['key']]
    generate = lineages[modelled['key']]['wyckoffdiff.generate']
    assert generate['chemsys'] == 'Li-O'
    assert generate['checkpoint_sha256'] == builder.generate.checkpoint.sha256
    assert generate['seed'] == 0
    assert generate['e_above_hull'] == 0.0
    assert generate['guided'] == list(SamplingConfig.guided) and generate['plausible'] is SamplingConfig.plausible
    assert generate['spacegroup_choice'] == {'method': 'given'}  # the scan's groups were an input
    # The run scores itself from its provenance graph; the committed sample rows stand in for the training data.
    dataset = load_dataset(build_dataset(sample_dir, output=tmp_path / 'ds.jsonl.gz', processes=1, progress=False).path)
    report = scan_report(node, dataset=dataset, stability=tolerance)
    metrics = report['metrics']
    assert metrics['samples'] == 3 * 2
    assert metrics['relaxed'] == len(relaxed)
    realize_report = next(n for n in node.called if n.process_label == 'realize_protostructures').outputs.report.get_list()
    modelled_entries = [entry for entry in realize_report if any(s.startswith('batch_') for s in entry['sources'])]
    assert metrics['distinct'] == len(modelled_entries) < len(realize_report)  # the model's, not the random ones
    assert metrics['realized'] == sum(1 for entry in modelled_entries if entry['ok'])  # of the model's samples too
    assert 0.0 < metrics['uniqueness'] <= 1.0 and metrics['p1_share'] == 0.0
    listed = {record['key'] for record in report['known_phases'] + report['new_near_hull']}
    assert listed <= {row['key'] for row in relaxed}
    assert all(record['e_above_hull'] <= tolerance for record in report['new_near_hull'])
    assert all(record['material_id'].startswith('mp-') for record in report['known_phases'])
    assert 'S.U.N.' in format_report(report)
    # The DFT hand-off starts from the run's hull structures and finds the potential's e_above_hull of each.
    assert {key: n.pk for key, n in structures_of(node).items()} == {key: n.pk for key, n in hull.items()}
    assert potential_e_above_hull(structure) == modelled['e_above_hull']
    # The hull structures as pymatgen entries with the run's references: PhaseDiagram reads them as they are.
    from click.testing import CliRunner
    from monty.serialization import loadfn
    from pymatgen.analysis.phase_diagram import PhaseDiagram

    from aiida_wyckoffdiff.cli import main

    result = CliRunner().invoke(main, ['export', str(node.pk), str(tmp_path / 'entries'), '--format', 'entries'])
    assert result.exit_code == 0, result.output
    entries = loadfn(tmp_path / 'entries' / 'entries.json')
    generated = {entry.entry_id: entry for entry in entries if 'lineage' in entry.data}
    assert set(generated) == set(hull) and {e.entry_id for e in entries} - set(hull) == {'reference_Li', 'reference_O'}
    # Where each elemental reference came from: MP's Li and solid O2, in the run's outputs and in the entries.
    sources = node.outputs.elemental_sources.get_dict()
    assert set(sources) == {'Li', 'O'} and all(source.startswith('mp-') for source in sources.values())
    assert {e.entry_id: e.data['source'] for e in entries if e.entry_id.startswith('reference_')} == {
        f'reference_{element}': source for element, source in sources.items()
    }
    rows = {row['key']: row for row in table}
    diagram = PhaseDiagram(entries)
    for key, entry in generated.items():
        assert entry.data['e_above_hull'] == rows[key]['e_above_hull'] and entry.data['run'] == node.uuid
        assert diagram.get_form_energy_per_atom(entry) == pytest.approx(rows[key]['formation_energy_per_atom'], abs=1e-6)


def test_corrupt_checkpoint_fails_cleanly(code, tmp_path) -> None:
    from aiida_wyckoffdiff.nodes import CheckpointData

    corrupt = tmp_path / 'corrupt.pt'
    corrupt.write_bytes(b'this is not a torch checkpoint')
    builder = phase_diagram_builder('Li-O', code=code.full_label, spacegroups=[225], num_samples=1, model_checkpoint=corrupt)
    _, node = run_get_node(builder)
    assert node.exit_status == node.process_class.exit_codes.ERROR_GENERATION_FAILED.status
    generate = node.called[0]
    assert generate.exit_status == 302
    assert 'checkpoint' in generate.exit_message.lower()
    assert isinstance(builder.generate.checkpoint, CheckpointData)
    reports = [log.message for log in orm.Log.collection.get_logs_for(node)]
    assert any(f'GenerateCalculation<{generate.pk}> failed with exit status 302' in message for message in reports), reports


def test_bad_inputs_are_refused_at_launch(code) -> None:
    with pytest.raises(ValueError, match="unknown element"):
        run_get_node(phase_diagram_builder('Li-Xx', code=code.full_label, spacegroups=[225]))
    with pytest.raises(ValueError, match='1 to 230'):
        run_get_node(phase_diagram_builder('Li-O', code=code.full_label, spacegroups=[231]))


def test_missing_code_says_what_to_do() -> None:
    from aiida_wyckoffdiff.exceptions import WyckoffDiffError

    with pytest.raises(WyckoffDiffError, match='wyckoffdiff setup'):
        phase_diagram_builder('Li-O', code='absent@nowhere')
