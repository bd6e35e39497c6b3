"""Samplers: ways to pick points of a generative model's latent space to synthesise or select training images.

One module per method, named like its experiment (`samplers.tsynd` serves `experiments.tsynd`), plus the two
pieces AISEL builds on (`energy`, `entropy`). Import the module you need: `from latentlab.samplers import energy`.
"""
