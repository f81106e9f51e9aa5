"""Run a training script with FSDP really sharding the model on CPU: a stand-in for a GPU machine in the tests.

Accelerate (1.x) applies FSDP only on GPUs and other accelerators; on CPU it keeps the data-parallel
(``MULTI_CPU``) mode, so ``accelerate launch --use_fsdp`` trains unsharded copies there (or fails first building its
plugin, with ``--fsdp_sync_module_states`` left true). PyTorch's FSDP2 (``fully_shard``) itself runs on CPU with
gloo. This wrapper lifts Accelerate's gate alone, so that a CPU run goes through the same code as on GPUs: the model
is sharded into DTensors, gradients reduce-scattered, checkpoints saved sharded, and the package's end-of-run save
gathers the shards. Usage, in place of the script under ``accelerate launch --use_fsdp ...``:

    accelerate launch --use_fsdp --fsdp_version 2 --fsdp_sync_module_states false \\
        --fsdp_cpu_ram_efficient_loading false ... tests/helpers/fsdp_on_cpu.py scripts/train_image.py ARGS
"""

import runpy
import sys

from accelerate.state import AcceleratorState
from accelerate.utils import DistributedType

_accelerator_state_init = AcceleratorState.__init__


def _init(self, *args, fsdp_plugin=None, **kwargs):
    _accelerator_state_init(self, *args, fsdp_plugin=fsdp_plugin, **kwargs)
    # Every later AcceleratorState() copies the process state (MULTI_CPU) over the shared one again: re-apply.
    plugin = fsdp_plugin or getattr(self, "fsdp_plugin", None)
    if plugin is not None and self.distributed_type == DistributedType.MULTI_CPU:
        self.distributed_type = DistributedType.FSDP
        self.fsdp_plugin = plugin


AcceleratorState.__init__ = _init

if __name__ == "__main__":
    script, sys.argv = sys.argv[1], sys.argv[1:]
    runpy.run_path(script, run_name="__main__")
