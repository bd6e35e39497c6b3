"""Figures of one method each (the shared figure helpers are in `latentlab.plotting`)."""
