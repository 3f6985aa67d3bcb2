"""Test-only shims that let the Keras anchors run on TensorFlow 2.21 + tf-keras 2.21.

keras-transformer-xl 0.14's Memory layer (used by keras-xlnet for Memory-0 ... Memory-n) calls
`self.add_update(K.update(self.memory, new_memory), inputs)`: the two-argument form of Keras 2.2.
tf-keras 2.x takes only `add_update(updates)` and raises TypeError, so no keras-xlnet model
builds. The shim gives Memory an `add_update(updates, inputs=None)` that drops `inputs` and calls
tf-keras' own. That changes nothing else: in tf-keras the variable assignment `K.update` runs
where it is created (eagerly, or as a stateful op inside predict's tf.function), and
`add_update` only runs callables; tf-keras had already stopped using `inputs` to pick updates.

Call `apply()` before building a model (it is idempotent); it imports TensorFlow.
"""
from __future__ import annotations

_APPLIED = False


def apply() -> None:
    """Patch keras_transformer_xl.Memory.add_update to accept and ignore a second argument."""
    global _APPLIED
    if _APPLIED:
        return
    from keras_transformer_xl.memory import Memory

    parent_add_update = Memory.add_update

    def add_update(self, updates, inputs=None):  # noqa: ARG001 - `inputs` is Keras 2.2's argument
        return parent_add_update(self, updates)

    Memory.add_update = add_update
    _APPLIED = True
