"""What the machine offers: devices, processes under torchrun, memory, files and checkpoints, optional packages."""
