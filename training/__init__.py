"""Training: StyleGAN2, sketch pairs, pSp encoder, DDPM, metrics."""
