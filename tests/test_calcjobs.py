"""CalcJob inputs and the command lines they submit; parsers on retrieved files."""

from __future__ import annotations

import json

import pytest
from aiida import orm
from aiida.common.folders import Folder
from aiida.engine.utils import instantiate_process
from aiida.manage import get_manager
from aiida.plugins import CalculationFactory, DataFactory
from click.testing import CliRunner
from pymatgen.core import Lattice, Structure

from aiida_wyckoffdiff.cli import main
from aiida_wyckoffdiff.model.config import SamplingConfig

pytestmark = pytest.mark.usefixtures('aiida_profile_clean')


@pytest.fixture
def code(aiida_localhost, tmp_path) -> orm.InstalledCode:
    return orm.InstalledCode(computer=aiida_localhost, filepath_executable='/usr/bin/env', label='wyckoffdiff').store()


@pytest.fixture
def checkpoint(tmp_path):
    weights = tmp_path / 'weights.pt'
    weights.write_bytes(b'not really weights')
    return DataFactory('wyckoffdiff.checkpoint').get_or_create(weights, kind='wyckoffdiff')


def prepare(entry_point: str, inputs: dict, sandbox) -> tuple[Folder, object]:
    """Instantiate a CalcJob and write its input files into ``sandbox``, as the engine does before upload."""
    process = instantiate_process(get_manager().get_runner(), CalculationFactory(entry_point), **inputs)
    folder = Folder(str(sandbox))
    return folder, process.prepare_for_submission(folder)


def test_generate_command_line(code, checkpoint, tmp_path) -> None:
    inputs = {'code': code, 'checkpoint': checkpoint, 'chemsys': 'Li-O', 'spacegroups': [225, 194], 'num_samples': 8,
              'e_above_hull': 0.0, 'seed': 3, 'energy_screen': 3}
    _, calcinfo = prepare('wyckoffdiff.generate', inputs, tmp_path)
    params = calcinfo.codes_info[0].cmdline_params
    assert params[:3] == ['generate', '--checkpoint', 'model.ckpt']
    assert params[params.index('--num-samples') + 1] == '16'  # 8 per group, two groups
    assert [params[i + 1] for i, p in enumerate(params) if p == '--spacegroup'] == ['225', '194']
    assert params[params.index('--e-above-hull') + 1] == '0.0'
    assert params[params.index('--energy-screen') + 1] == '3'
    assert params[params.index('--guided') + 1] == ','.join(SamplingConfig.guided)
    assert ('--plausible' if SamplingConfig.plausible else '--any-composition') in params
    assert params[-2:] == ['--output', 'results.json']
    assert calcinfo.local_copy_list == [(checkpoint.uuid, checkpoint.filename, 'model.ckpt')]
    assert 'results.json' in calcinfo.retrieve_list
    assert '--exclude' not in params


def test_generate_writes_the_labels_to_exclude(code, checkpoint, tmp_path) -> None:
    """A later round's labels to exclude travel as a file the command reads, and the command returns none of them."""
    labels = ['AB_cF8_225_a_b:Li-O', 'A2B_cF12_225_c_a:Li-O']
    inputs = {'code': code, 'checkpoint': checkpoint, 'chemsys': 'Li-O', 'spacegroups': [225], 'num_samples': 4,
              'exclude': labels}
    _, calcinfo = prepare('wyckoffdiff.generate', inputs, tmp_path)
    params = calcinfo.codes_info[0].cmdline_params
    assert params[params.index('--exclude') + 1] == 'exclude.txt'
    assert (tmp_path / 'exclude.txt').read_text().split() == labels
    output = tmp_path / 'generated.json'
    result = CliRunner().invoke(main, ['generate', '--chemsys', 'Li-O', '--spacegroup', '225', '--num-samples', '4',
                                       '--exclude', str(tmp_path / 'exclude.txt'), '--output', str(output)])
    assert result.exit_code == 0, result.output
    document = json.loads(output.read_text())
    assert len(document['samples']) == 4 and document['meta']['requested']['excluded'] == 2
    assert not {sample['protostructure'] for sample in document['samples']} & set(labels)


@pytest.mark.parametrize(
    ('change', 'message'),
    [
        ({'chemsys': 'Li-Xx'}, "unknown element(s) 'Xx'"),
        ({'spacegroups': [225, 231]}, 'numbers from 1 to 230'),
        ({'num_samples': 0}, 'must be positive'),
        ({'guided': ['chemsys', 'colour']}, r"cannot guide on \['colour'\]"),
        ({'energy_guidance': -1.0}, 'energy_guidance is a weight, 0 or more, not -1.0'),
        ({'energy_screen': 0}, 'energy_screen must be positive, not 0'),
    ],
)
def test_generate_refuses_bad_input_before_submission(code, checkpoint, tmp_path, change, message) -> None:
    inputs = {'code': code, 'checkpoint': checkpoint, 'chemsys': 'Li-O', 'spacegroups': [225], 'num_samples': 4, **change}
    with pytest.raises(ValueError, match=message.replace('(', r'\(').replace(')', r'\)')):
        prepare('wyckoffdiff.generate', inputs, tmp_path)


def test_relax_writes_exact_structures(code, tmp_path) -> None:
    li2o = Structure.from_spacegroup('Fm-3m', Lattice.cubic(4.61), ['Li', 'O'], [[0.25, 0.25, 0.25], [0, 0, 0]])
    inputs = {'code': code, 'structures': {'li2o': orm.StructureData(pymatgen=li2o)}, 'relaxer': 'chgnet',
              'settings': {'fmax': 0.1, 'fix_symmetry': True}}
    folder, calcinfo = prepare('wyckoffdiff.relax', inputs, tmp_path)
    params = calcinfo.codes_info[0].cmdline_params
    assert params[:2] == ['relax', 'structures/li2o.json']
    assert params[params.index('--fmax') + 1] == '0.1'
    assert '--fix-symmetry' in params and '--free' not in params
    assert 'trajectories' in calcinfo.retrieve_list
    written = Structure.from_dict(json.loads((tmp_path / 'structures' / 'li2o.json').read_text()))
    assert written.matches(li2o) and len(written) == len(li2o)


def test_relax_alternatives_are_written_beside_their_structure(code, tmp_path) -> None:
    li2o = Structure.from_spacegroup('Fm-3m', Lattice.cubic(4.61), ['Li', 'O'], [[0.25, 0.25, 0.25], [0, 0, 0]])
    node = orm.StructureData(pymatgen=li2o)
    inputs = {'code': code, 'structures': {'li2o': node, 'li': orm.StructureData(pymatgen=li2o)},
              'alternatives': {'li2o_c1': node, 'li2o_c2': node}}
    _, calcinfo = prepare('wyckoffdiff.relax', inputs, tmp_path)
    params = calcinfo.codes_info[0].cmdline_params
    assert params[params.index('--alternatives') + 1] == 'alternatives.json'
    assert json.loads((tmp_path / 'alternatives.json').read_text()) == {
        'structures/li2o.json': ['alternatives/li2o_c1.json', 'alternatives/li2o_c2.json']
    }
    assert (tmp_path / 'alternatives' / 'li2o_c2.json').is_file()
    orphan = {**inputs, 'alternatives': {'rutile_c1': node, 'li2o_x': node}}
    with pytest.raises(ValueError, match=r"alternatives \['li2o_x', 'rutile_c1'\] belong to no structure"):
        prepare('wyckoffdiff.relax', orphan, tmp_path / 'orphan')


def test_relax_refuses_unknown_settings(code, tmp_path) -> None:
    li = Structure(Lattice.cubic(3.5), ['Li', 'Li'], [[0, 0, 0], [0.5, 0.5, 0.5]])
    inputs = {'code': code, 'structures': {'li': orm.StructureData(pymatgen=li)}, 'settings': {'fmx': 0.1}}
    with pytest.raises(ValueError, match='unknown relax settings'):
        prepare('wyckoffdiff.relax', inputs, tmp_path)


def test_relax_staged_settings_reach_the_command_line(code, tmp_path) -> None:
    """The workflow's default (the staged protocol) and the old free relaxation one setting away."""
    from aiida_wyckoffdiff.calculations.relax import STAGED_SETTINGS

    li2o = Structure.from_spacegroup('Fm-3m', Lattice.cubic(4.61), ['Li', 'O'], [[0.25, 0.25, 0.25], [0, 0, 0]])
    structures = {'li2o': orm.StructureData(pymatgen=li2o)}
    for settings, present, absent in [
        ({**STAGED_SETTINGS, 'workers': 2, 'cores': 1},
         ['--fix-symmetry', '--free-within', '--prune-above', '--workers', '--cores'], ['--free']),
        ({**STAGED_SETTINGS, 'fix_symmetry': False, 'prune_above': None}, ['--free'],
         ['--prune-above', '--workers', '--cores']),
    ]:
        _, calcinfo = prepare('wyckoffdiff.relax', {'code': code, 'structures': structures, 'settings': settings}, tmp_path)
        params = calcinfo.codes_info[0].cmdline_params
        assert all(flag in params for flag in present) and not any(flag in params for flag in absent), params
        assert params[-2:] == ['--output', 'results.jsonl'] and 'results.jsonl' in calcinfo.retrieve_list
    assert params[params.index('--prune-after') + 1] == str(STAGED_SETTINGS['prune_after'])
    assert params[params.index('--bfgs-alpha') + 1] == str(STAGED_SETTINGS['bfgs_alpha'])
    assert params[params.index('--cell-stiffness') + 1] == str(STAGED_SETTINGS['cell_stiffness'])


@pytest.mark.parametrize(
    ('settings', 'message'),
    [({'prune_above': 'far'}, 'invalid relax settings'), ({'workers': 0}, 'workers must be a positive integer'),
     ({'cores': True}, 'cores must be a positive integer'),
     ({'fmax': -1}, 'fmax must be a positive'), ({'bfgs_alpha': 0}, 'bfgs_alpha must be a positive'),
     ({'cell_stiffness': -0.9}, 'cell_stiffness must be a positive')],
)
def test_relax_refuses_bad_staged_settings(code, tmp_path, settings, message) -> None:
    li = Structure(Lattice.cubic(3.5), ['Li', 'Li'], [[0, 0, 0], [0.5, 0.5, 0.5]])
    inputs = {'code': code, 'structures': {'li': orm.StructureData(pymatgen=li)}, 'settings': settings}
    with pytest.raises(ValueError, match=message):
        prepare('wyckoffdiff.relax', inputs, tmp_path)


def test_monitor_reports_progress_from_the_results_file(aiida_localhost, tmp_path) -> None:
    """What a running relax job has appended so far, reported once per change into the job's process report."""
    from aiida_wyckoffdiff.calculations.monitors import relax_progress
    from aiida_wyckoffdiff.results_file import ResultsWriter

    node = orm.CalcJobNode(computer=aiida_localhost, process_type='aiida.calculations:wyckoffdiff.relax')
    node.set_remote_workdir(str(tmp_path))
    node.store()
    with aiida_localhost.get_transport() as transport:
        assert relax_progress(node, transport) is None  # no results file yet: nothing to say
        weights = {'potential': 'chgnet', 'checkpoint_sha256': '0' * 64}
        writer = ResultsWriter(tmp_path / 'results.jsonl', weights | {'inputs': 36})
        for index, extra in enumerate([{}, {'pruned': '0.9 eV/atom above the hull after 20 steps (> 0.5)'},
                                       {'reason': 'atoms collapsed'}]):
            record = {'index': index, 'formula': 'Li2O', 'reason': None, 'pruned': None, **extra}
            writer.write('structure', weights | record)
        for _ in range(2):
            assert relax_progress(node, transport) is None  # a monitor's message would kill the job
    writer.close(complete=False)
    reports = [log.message for log in orm.Log.collection.get_logs_for(node)]
    assert reports == ['relaxed 3 of 36 (1 pruned, 1 failed)']
