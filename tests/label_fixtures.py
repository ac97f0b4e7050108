"""Hand-made input files for the tests of label_generator.py,
partition_generator.py and label_distribution_analysis.py, and a runner that
calls a script through its command line."""
import os
import subprocess
import sys

import numpy as np

from ser import muse
from ser import paths

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def write(path, content):
    """Write text, or bytes for broken encodings, creating the directories."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'wb') as handle:
        handle.write(content.encode('utf-8') if isinstance(content, str) else content)


def write_partition(path, partition):
    """A partition file from {Id: Proposal}."""
    write(path, 'Id,Proposal\n' + ''.join('%s,%s\n' % item for item in partition.items()))


def write_labels(work_dir, video_id, frames, segments=2):
    """<work_dir>/labels/<Id>/<Id>_<seg>.csv from (arousal, valence) pairs:
    the frames cut into `segments` consecutive segments (fewer when there are
    fewer frames), each timed from 0 ms, 250 ms apart."""
    for number, part in enumerate(np.array_split(np.asarray(frames, dtype=float),
                                                 min(segments, len(frames))), start=1):
        write(paths.label_path(work_dir, paths.segment_name(video_id, number)),
              'timestamp,arousal,valence\n' + ''.join(
                  '%d,%r,%r\n' % (index * paths.LABEL_STEP_MS, float(arousal), float(valence))
                  for index, (arousal, valence) in enumerate(part)))


def video_labels(work_dir, video_id):
    """Float array [frames, 2] of every segment label file of a video, in order."""
    return np.concatenate([muse.read_labels(paths.label_path(work_dir, name))[1]
                           for name in paths.work_segments(paths.labels_dir(work_dir), video_id)])


def run_script(script, *args):
    """Run a pipeline script as a user would; returns the CompletedProcess."""
    return subprocess.run([sys.executable, os.path.join(REPO, script)] + list(args),
                          cwd=REPO, capture_output=True, text=True, check=False)
