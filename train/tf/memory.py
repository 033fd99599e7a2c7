"""Peak memory of this process: host resident memory and, with GPUs, bytes allocated on each.

The training child reports it in its Outcome: for the run (the driver prints it), and for
each --batch_size auto point, which is the same child run a few steps at one batch size.
"""

from __future__ import annotations

import resource


def host_peak() -> int:
    """The process's peak resident set size in bytes (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def gpu_names(tf) -> list[str]:
    """The names ("GPU:0", ...) of the GPUs this process uses (after set_visible_devices)."""
    return [f"GPU:{i}" for i in range(len(tf.config.list_logical_devices("GPU")))]


def peaks(tf) -> dict[str, int]:
    """{"host": bytes, "GPU:i": peak bytes TensorFlow's allocator handed out there}."""
    found = {"host": host_peak()}
    for name in gpu_names(tf):
        try:
            found[name] = int(tf.config.experimental.get_memory_info(name)["peak"])
        except (ValueError, tf.errors.OpError):  # an allocator without statistics
            continue
    return found


def gpu_limits(tf) -> dict[str, int]:
    """{"GPU:i": bytes TensorFlow may allocate on it}: its allocator's limit.

    That is the device's free memory when TensorFlow started, less what CUDA keeps, which is
    the budget a batch must fit into (nvidia-smi's total counts memory TF can never have).
    """
    if not gpu_names(tf):
        return {}
    from tensorflow.python.client import device_lib  # noqa: PLC0415 - the one place it is read

    return {
        device.name.split("device:", 1)[-1]: int(device.memory_limit)
        for device in device_lib.list_local_devices()
        if device.device_type == "GPU"
    }


def measured(tf, with_limits: bool) -> dict:
    """What Outcome.memory holds: {"peaks": peaks(tf), "limits": gpu_limits(tf) or {}}.

    The limits only when asked (the --batch_size auto points): device_lib lists the devices
    anew, which a training run does not need.
    """
    limits = {}
    if with_limits:
        try:
            limits = gpu_limits(tf)
        except Exception:  # noqa: BLE001 - a limit we cannot read: the GPU gets no budget
            pass
    return {"peaks": peaks(tf), "limits": limits}
