"""The bench's sections, in report order: a module of its own (no numpy) because the command line lists them
every time it starts."""
SECTIONS = ("completion", "effectors", "proportions", "denoising", "generation", "lifting", "speed", "takes", "load")
