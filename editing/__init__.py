"""Offline direction finding and editing on generators returned by models.load.

GAN methods (every one reads its generator through editing.sampling.load_generator -> models.load):
  interfacegan   SVM boundaries of scored latents, conditional projection (Shen et al.)
  ganspace       PCA of sampled W, layer-range edits (Härkönen et al.)
  sefa           eigenvectors of the style affines' A^T A (Shen & Zhou)
  resefa         region-local directions, generalized eigenproblem of Jacobian Grams (after Zhu et al.)
  tensor_model   HOSVD / Tucker models of structured latent sets, ALS estimation, expression directions,
                 point of apathy (René Haas's thesis, Papers I/II)
  nrsfm          rank-one NRSfM landmark model, latent regressor, linear and gradient edits (Paper III)
Support: attributes (computed drawing attributes), labels (CelebA / UTKFace / FER readers), landmarks
(MediaPipe and ink-hull detectors), grid (edit grids), invert and structured (embedding structured sets),
sampling (the generator access). `python -m editing <method> --help` for the command line; the diffusion
h-space methods live in editing.hspace.
"""
