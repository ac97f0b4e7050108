"""The machine this runs on, as /proc/cpuinfo and the platform name it,
without loading TensorFlow: the CPU's model and instruction-set flags, and a
description of the machine to put beside figures measured on it."""
import importlib.metadata
import os
import platform


def cpuinfo_field(name):
    """The value of the first `name` line of /proc/cpuinfo, None off Linux."""
    try:
        with open('/proc/cpuinfo', encoding='utf-8') as handle:
            for line in handle:
                if line.split(':', 1)[0].strip() == name:
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return None


def cpu_flags():
    """The instruction-set flags of the CPU, empty off Linux."""
    return set((cpuinfo_field('flags') or '').split())


def cpu_model():
    """The CPU's model name, as the OS names it."""
    return cpuinfo_field('model name') or platform.processor() or platform.machine()


def machine():
    """What figures were measured on: the CPU, the cores, the system, the
    Python and the installed TensorFlow versions (None when it is not)."""
    try:
        tensorflow = importlib.metadata.version('tensorflow')
    except importlib.metadata.PackageNotFoundError:
        tensorflow = None
    return {'cpu': cpu_model(), 'cores': os.cpu_count(),
            'system': platform.platform(), 'python': platform.python_version(),
            'tensorflow': tensorflow}
