"""The backend-neutral diffusion core shared by FreeControl and Ctrl-X: loading, model identity, text
conditioning, VAE and UNet calls, DDIM inversion and its cache, attention processors, and the generation job loop.
Submodules import torch / diffusers; this package itself imports nothing heavy."""
