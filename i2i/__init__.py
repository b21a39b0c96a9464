"""i2i: image-to-image translation with CycleGAN and FreeControl.

Importing the package is cheap: submodules that need torch or diffusers are imported only when used.
"""

__version__ = "0.1.0"
