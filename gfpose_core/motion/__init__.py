"""The motion prior over windows of frames: its network, windows, the sampler over takes (denoise, in-betweens),
foot contacts and training."""
