"""Fault injection for the failure tests' worker processes (PYTHONPATH puts this first).

A GPU running out of memory cannot happen on this machine, so a model whose config.json says
`"memaudit_fault": "oom"` raises what CUDA raises, `torch.OutOfMemoryError`, from its forward
pass; `"raise"` makes it raise a RuntimeError as a failing kernel does. Nothing else changes,
and only worker processes started by those tests see this file.
"""

import os

if os.environ.get("MEMAUDIT_TEST_FAULTS") == "1":
    import torch
    from transformers import GPT2Model

    _forward = GPT2Model.forward  # the engine runs the body, then its own chunked head

    def _forward_with_faults(self, *args, **kwargs):
        if getattr(self.config, "memaudit_fault", None) == "oom":
            raise torch.OutOfMemoryError(
                "CUDA out of memory. Tried to allocate 20.00 GiB (GPU 0; 79.15 GiB total)"
            )
        if getattr(self.config, "memaudit_fault", None) == "raise":
            raise RuntimeError("cuDNN error: CUDNN_STATUS_EXECUTION_FAILED")
        return _forward(self, *args, **kwargs)

    GPT2Model.forward = _forward_with_faults
