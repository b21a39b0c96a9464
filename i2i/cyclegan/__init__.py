"""CycleGAN (Zhu et al. 2017): networks, unpaired data, training, translation, evaluation, import/export."""
