"""Running a stage script the way a user runs it, for a program that needs what the stage makes: in a process of
its own (several under paddle.distributed.launch), failing with one line that names its log, and returning what
it wrote (a JSON file)."""
import os
import subprocess
import sys

from ner_ofa.cli import UserError, logger
from ner_ofa.distributed import launch_command
from ner_ofa.model_io import read_json

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_stage(script, argv, result_path=None, procs=1, log_dir=None):
    """``python SCRIPT ARGV`` (``script``: a file of the repository, e.g. "quantize_model.py"), its output on this
    process's stdout and stderr; or, with ``procs`` > 1, on that many processes under paddle.distributed.launch
    (one OpenMP thread each, --batch_size is per process) with the workers' logs in ``log_dir``. A non-zero exit
    is a UserError naming the log. Returns the JSON at ``result_path`` (what the stage wrote), or None."""
    stage = os.path.splitext(os.path.basename(script))[0]
    path = os.path.join(REPO, script)
    if procs > 1:
        logger.info("%s on %d processes, logs in %s", stage, procs, log_dir)
        code = subprocess.run([*launch_command(procs, log_dir), path, *argv],
                              env=dict(os.environ, OMP_NUM_THREADS="1")).returncode
        if code != 0:
            raise UserError(f"{stage} failed on {procs} processes: see {log_dir}/workerlog.*")
    else:
        code = subprocess.run([sys.executable, path, *argv]).returncode
        if code != 0:
            raise UserError(f"{stage} failed (exit code {code}): see its log above")
    return None if result_path is None else read_json(result_path)
