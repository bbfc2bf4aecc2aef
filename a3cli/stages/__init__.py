"""Pipeline stages. Each is a function from files to files inside the run directory:

    run_generate(spec, run_dir, engine, *, import_path=None) -> StageManifest
    run_split(spec, run_dir, engine=None) -> StageManifest
    run_expect(spec, run_dir, engine) -> StageManifest

Probes and how a model is measured on them live in `a3cli.probes`, beneath both the stages and `a3cli.evaluate`.
"""

from a3cli.stages.expect import run_expect
from a3cli.stages.generate import run_generate
from a3cli.stages.split import load_scored, run_split

__all__ = ["load_scored", "run_expect", "run_generate", "run_split"]
