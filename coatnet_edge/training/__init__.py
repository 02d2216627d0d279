"""Training: the train and distill verbs, one loop (QAT uses it too), losses, resume state, torch data.

``verbs`` (train, distill) -> ``fit`` (their setup and checkpoints) -> ``loop`` (the epochs, shared with
QAT), with ``schedule``, ``losses``, ``state`` (resume), ``distributed`` (torchrun), ``predict``
(batched eval logits), ``config`` and ``torch_data``.
"""
