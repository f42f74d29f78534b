"""`gfpose bench`: the engine against classical baselines on held-out data, one module per section, with the
baselines, metrics, targets, report and plots. Nothing in the engine imports it."""
