"""Hand-made input files for the tests of label_generator.py,
partition_generator.py and label_distribution_analysis.py, and a runner that
calls a script through its command line."""
import os
import subprocess
import sys

import helper

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def write(path, content):
    """Write text, or bytes for broken encodings, creating the directories."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'wb') as handle:
        handle.write(content.encode('utf-8') if isinstance(content, str) else content)


def write_partition(path, partition):
    """A partition file from {Id: Proposal}."""
    write(path, 'Id,Proposal\n' + ''.join('%s,%s\n' % item for item in partition.items()))


def write_labels(work_dir, recording_id, frames):
    """<work_dir>/labels/<Id>.csv from (arousal, valence) pairs, 250 ms apart."""
    write(os.path.join(helper.labels_dir(work_dir), recording_id + '.csv'),
          'timestamp,arousal,valence\n' + ''.join(
              '%d,%r,%r\n' % (index * helper.LABEL_STEP_MS, float(arousal), float(valence))
              for index, (arousal, valence) in enumerate(frames)))


def run_script(script, *args):
    """Run a pipeline script as a user would; returns the CompletedProcess."""
    return subprocess.run([sys.executable, os.path.join(REPO, script)] + list(args),
                          cwd=REPO, capture_output=True, text=True, check=False)
