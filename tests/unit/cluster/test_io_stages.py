"""The task stages' module (decode, write) stays free of torch: each Ray task worker that runs them
is a process of its own, and torch would be most of its memory."""

import subprocess
import sys


def test_task_stages_import_neither_torch_nor_the_refinement_cores():
    code = (
        "import sys, pipeline.cluster.io_stages; "
        "print(sorted(m for m in ('torch', 'pydensecrf', 'pipeline.cam') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
