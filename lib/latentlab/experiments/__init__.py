"""Per-notebook experiments: each module's `run_seed(task) -> list[dict]` is one seed of one dataset, every arm.

A notebook builds its tasks (dicts of dataset, seed and its parameters) and hands them to `latentlab.grid.run`.
These modules only compose the models (`latentlab.models`), samplers (`latentlab.samplers`), the training core
(`latentlab.train`), the oracle (`latentlab.oracle`) and the metrics; nothing imports them back.
"""
