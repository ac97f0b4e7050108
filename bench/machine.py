"""What a benchmark figure was measured on, so a reader can compare numbers
from different machines and judge how busy this one was; and how each
benchmark hands its figures over to run_all.py.

    .venv/bin/python bench/machine.py      # prints the description and its JSON

machine() gives ser.host's description (the CPU model, the cores, the system),
Python versions, whether oneDNN is on (TF_ENABLE_ONEDNN_OPTS and what
TensorFlow itself reports), whether TensorFlow sees a GPU, and the load
average (1, 5, 15 minutes) at the moment it is called: on a shared machine
other processes take cores, and every figure is only as good as that load.
"""

import json
import logging
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import helper  # noqa: E402  (needs the repository on sys.path)
from ser import host, mixed_precision  # noqa: E402


def load_average():
    """Load average over 1, 5 and 15 minutes (None where the OS has none)."""
    try:
        return [round(value, 2) for value in os.getloadavg()]
    except OSError:
        return None


def busy_cpu_seconds():
    """CPU seconds every process on the machine has used since boot (all
    cores; /proc/stat, every state but idle and iowait), None off Linux.
    Minus what a benchmark used itself, over its wall time: how many cores
    other processes took meanwhile, which the load average cannot tell
    apart from the benchmark's own threads."""
    try:
        with open('/proc/stat', encoding='ascii') as handle:
            ticks = [int(value) for value in handle.readline().split()[1:9]]
    except OSError:
        return None
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf('SC_CLK_TCK')


def onednn():
    """{'env': TF_ENABLE_ONEDNN_OPTS as set (None: TensorFlow's default),
    'enabled': what TensorFlow reports}."""
    return {'env': os.environ.get(mixed_precision.ONEDNN_VARIABLE),
            'enabled': mixed_precision.onednn_enabled()}


def machine():
    """ser.host's description, with the TensorFlow that runs and what it sees."""
    tf = helper.import_tensorflow()
    return dict(host.machine(), tensorflow=tf.__version__, onednn=onednn(),
                gpu=bool(tf.config.list_physical_devices('GPU')), load_average=load_average())


def start(verbose):
    """Every benchmark's first step: logging set up, the machine logged and
    returned (its load average is the one at the benchmark's start)."""
    helper.setup_logging(verbose)
    info = machine()
    logging.info('machine: %s', describe(info))
    return info


def hand_over(metrics, details, info):
    """Print a benchmark's figures as the last line of stdout, the JSON
    run_all.py collects: {metric: value, ..., "details": ..., "machine": ...}."""
    print(json.dumps(dict(metrics, details=details, machine=info)))


def describe(info):
    """One line for logs and tables."""
    load = info.get('load_average')
    return ('%s, %d cores, TensorFlow %s (oneDNN %s%s), Python %s, %s; load average %s'
            % (info['cpu'], info['cores'], info['tensorflow'],
               'on' if info['onednn']['enabled'] else 'off',
               '' if info['onednn']['env'] is None
               else ', TF_ENABLE_ONEDNN_OPTS=%s' % info['onednn']['env'],
               info['python'], 'GPU' if info['gpu'] else 'no GPU',
               ' / '.join('%.2f' % v for v in load) if load else 'unknown'))


if __name__ == '__main__':
    description = machine()
    print(describe(description))
    print(json.dumps(description))
