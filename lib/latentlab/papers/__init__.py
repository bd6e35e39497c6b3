"""The papers' own numbers, one module per method: their tables, effect sizes and the claims a notebook tests."""
