"""Diffusion processes over point sequences: schedules, the forward process and its losses,
samplers and classifier-free guidance (ALGORITHMS.md section 4).

``process.DiffusionProcess`` is the interface; ``process.GaussianProcess`` (DDPM) implements it.
Star-shaped and shortest-path processes are meant to implement the same interface later.
"""
