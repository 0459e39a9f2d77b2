"""Training of the models the stream serves (``framestream train``); runs on the CPU."""
