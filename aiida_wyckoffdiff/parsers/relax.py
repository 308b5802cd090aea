"""Parser of ``wyckoffdiff.relax``: relaxed structures, per-structure results and trajectories."""

from __future__ import annotations

from pathlib import PurePosixPath

from aiida import orm
from aiida.engine import ExitCode

from ..calculations.relax import failed_structures
from ..results_file import read_results
from .base import WyckoffDiffParser

__all__ = ['RelaxParser']


class RelaxParser(WyckoffDiffParser):
    CACHE_VERSION = 3
    """2: incomplete results give 420; only finished structures' trajectories are attached. 3: JSON Lines results;
    ``results`` also holds the elemental energies the job measured the hull against."""

    decode = staticmethod(read_results)

    def parse(self, **kwargs) -> ExitCode | None:  # noqa: ANN003 - aiida-core passes retrieved folders by keyword
        from pymatgen.core import Structure

        document = self.read_results()
        if isinstance(document, ExitCode):
            return document
        calc = self.node.process_class
        results = {}
        for entry in document.get('structures', []):
            key = PurePosixPath(entry['input']).stem  # structures/<key>.json
            if entry.get('structure'):
                self.out(f'relaxed.{key}', orm.StructureData(pymatgen=Structure.from_dict(entry['structure'])))
            results[key] = {name: value for name, value in entry.items() if name != 'structure'}
        summary = {name: document.get(name) for name in ('potential', 'checkpoint_sha256', 'settings', 'elemental_energies')}
        self.out('results', orm.Dict({**summary, 'structures': results}))
        self._attach_trajectories(calc.TRAJECTORY_FOLDER, set(results))
        if not document.get('complete', False):
            # The scheduler's stderr is where the shell says "Killed"; the command's own ends with its progress.
            scheduler_stderr = self.node.get_option('scheduler_stderr')
            logs = (self._retrieved_text(scheduler_stderr) if scheduler_stderr else '',
                    self._retrieved_text(calc.FILENAME_STDERR))
            tail = ' | '.join(line for text in logs for line in text.strip().splitlines()[-2:]) or '(empty)'
            total = len(self.node.inputs.structures)
            return self.exit_codes.ERROR_INTERRUPTED.format(done=len(results), total=total, stderr=tail)
        failed, reasons = failed_structures(results)
        if results and len(failed) == len(results):
            return self.exit_codes.ERROR_ALL_STRUCTURES_FAILED.format(reasons=reasons)
        if failed:
            return self.exit_codes.WARNING_SOME_STRUCTURES_FAILED.format(failed=len(failed), total=len(results), reasons=reasons)
        return None

    def _attach_trajectories(self, folder_name: str, keys: set[str]) -> None:
        """The trajectories of the structures in ``keys``: an interrupted job's unfinished ones are left out."""
        repository = self.retrieved.base.repository
        try:
            names = [name for name in repository.list_object_names(folder_name) if PurePosixPath(name).stem in keys]
        except (FileNotFoundError, NotADirectoryError):
            return
        if not names:
            return
        trajectories = orm.FolderData()
        for name in names:
            with repository.open(f'{folder_name}/{name}', mode='rb') as handle:
                trajectories.base.repository.put_object_from_filelike(handle, name)
        self.out('trajectories', trajectories)
