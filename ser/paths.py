"""Where the pipeline's files are and what they are called. Inputs: MuSe-CaR
2020 as distributed (the processed-tasks package, MuseLayout); outputs under
--work_dir, one function per directory. The unit of work is the segment
<Id>_<seg>: its name, its video and its order. And the partition files that
say which set a video is in."""
import os
import re

import helper
from ser import defaults

LABEL_STEP_MS = 250
DIMENSIONS = ('arousal', 'valence')
AUDIO_EXTENSIONS = ('.wav', '.flac', '.ogg', '.mp3', '.mp4', '.m4a', '.webm', '.mkv')


def segment_name(video_id, segment):
    """`<Id>_<seg>`: the name of segment `segment` (an int) of video `video_id`."""
    return '%s_%d' % (video_id, int(segment))


def split_segment_name(name):
    """(video id, segment int) of `<Id>_<seg>`; ValueError when it is not one."""
    video_id, separator, segment = name.rpartition('_')
    if not separator or not video_id or not segment.isdigit():
        raise ValueError('%r is not a segment name <Id>_<seg>' % name)
    return video_id, int(segment)


def video_of(name):
    return split_segment_name(name)[0]


def segment_sort_key(name):
    """Segments of a video in order (2 before 10), videos in natural order."""
    video_id, segment = split_segment_name(name)
    return (natural_key(video_id), segment)


def natural_key(text):
    """Runs of digits compared by value (2 before 10), the rest by name."""
    return [(0, int(part), '') if part.isdigit() else (1, 0, part)
            for part in re.split(r'(\d+)', text) if part]


class MuseLayout:
    """Where MuSe-CaR 2020 keeps each file:

        <muse_dir>/metadata/partition.csv                        Id,Proposal (video ids)
        <muse_dir>/<task_dir>/audio_segments/<Id>/<Id>_<seg>.wav
        <muse_dir>/<task_dir>/transcription_segments/<Id>/<Id>_<seg>.csv
        <muse_dir>/<task_dir>/label_segments/<dimension>/<Id>.csv
    """

    def __init__(self, muse_dir=helper.DEFAULT_MUSE_DIR, task_dir=helper.DEFAULT_TASK_DIR):
        self.muse_dir = muse_dir
        self.task_path = os.path.join(muse_dir, task_dir)

    @property
    def partition_path(self):
        return os.path.join(self.muse_dir, 'metadata', 'partition.csv')

    def audio_dir(self, video_id):
        return os.path.join(self.task_path, 'audio_segments', video_id)

    def transcript_dir(self, video_id):
        return os.path.join(self.task_path, 'transcription_segments', video_id)

    def label_dir(self, dimension):
        return os.path.join(self.task_path, 'label_segments', dimension)

    def transcript_path(self, name):
        return os.path.join(self.transcript_dir(video_of(name)), name + '.csv')

    def label_path(self, dimension, video_id):
        return os.path.join(self.label_dir(dimension), video_id + '.csv')

    def audio_path(self, name):
        """The segment's audio: `<Id>_<seg>.wav`, or another container ffmpeg reads."""
        directory = self.audio_dir(video_of(name))
        for extension in AUDIO_EXTENSIONS:
            candidate = os.path.join(directory, name + extension)
            if os.path.isfile(candidate):
                return candidate
        raise helper.InputError(os.path.join(directory, name + '.wav'), None,
                                'no audio file for segment %s' % name)

    def audio_segments(self, video_id):
        """Names `<Id>_<seg>` of the video's segment audio files, in segment
        order; files of other names are ignored. [] when it has none."""
        directory = self.audio_dir(video_id)
        if not os.path.isdir(directory):
            return []
        names = set()
        for filename in helper.list_dir(directory):
            name, extension = os.path.splitext(filename)
            if extension.lower() in AUDIO_EXTENSIONS and _is_segment_of(name, video_id):
                names.add(name)
        return sorted(names, key=segment_sort_key)


def _is_segment_of(name, video_id):
    try:
        return video_of(name) == video_id
    except ValueError:
        return False


def sync_maps_dir(work_dir):
    return os.path.join(work_dir, 'sync_maps')


def labels_dir(work_dir):
    return os.path.join(work_dir, 'labels')


def sync_map_path(work_dir, name):
    """sync_maps/<Id>/<Id>_<seg>.csv of segment `name`."""
    return os.path.join(sync_maps_dir(work_dir), video_of(name), name + '.csv')


def label_path(work_dir, name):
    """labels/<Id>/<Id>_<seg>.csv of segment `name`."""
    return os.path.join(labels_dir(work_dir), video_of(name), name + '.csv')


def work_segments(directory, video_id):
    """Segment names of the `<Id>_<seg>.csv` files in directory/<Id>/ (a
    sync_maps/ or labels/ tree), in segment order; [] when there are none."""
    video_dir = os.path.join(directory, video_id)
    if not os.path.isdir(video_dir):
        return []
    names = [name for name in helper.list_ids(video_dir, '.csv')
             if _is_segment_of(name, video_id)]
    return sorted(names, key=segment_sort_key)


def partition_path(work_dir):
    return os.path.join(work_dir, 'partition.csv')


def plots_dir(work_dir):
    return os.path.join(work_dir, 'plots')


def tfrecords_dir(work_dir):
    return os.path.join(work_dir, 'tfrecords')


def embeddings_dir(work_dir):
    return os.path.join(work_dir, 'embeddings')


def read_partition(path):
    """{Id: Proposal} from a partition file (header Id,Proposal), in file order."""
    partition = {}
    rows = helper.read_table(path, [('Id', str), ('Proposal', str)], line_numbers=True)
    for row_number, (recording_id, proposal) in rows:
        if not recording_id:
            raise helper.InputError(path, row_number, 'empty Id')
        if proposal not in defaults.PORTIONS:
            raise helper.InputError(path, row_number, 'Proposal %r is not one of %s'
                                    % (proposal, ', '.join(defaults.PORTIONS)))
        if recording_id in partition:
            raise helper.InputError(path, row_number, 'Id %s listed twice' % recording_id)
        partition[recording_id] = proposal
    return partition


def select_videos(layout, ids=None):
    """Video ids of the MuSe partition (a MuseLayout), in file order; only
    `ids` if given."""
    recording_ids = list(read_partition(layout.partition_path))
    unknown = sorted(set(ids or ()) - set(recording_ids))
    if unknown:
        raise helper.InputError(layout.partition_path, None,
                                '--ids not in the partition: %s' % ', '.join(unknown))
    return [i for i in recording_ids if ids is None or i in ids]
