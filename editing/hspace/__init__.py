"""h-space editing of diffusion models (Kwon et al.; thesis paper V) on diffusers' UNet2DModel + DDIMScheduler.

Read or shift the UNet mid-block output h_t while sampling (`sample`, `Edit`), invert real drawings
(`ddim_invert`), and find directions by PCA, Jacobian singular vectors, labels, and orthogonal projection.
`python -m editing hspace --help` writes edit grids.
"""
from editing.hspace.directions import (h_to_eps, jacobian_directions, mean_difference, orthogonalize,
                                       pca_per_timestep, spread, svm_normal, top_singular_vectors)
from editing.hspace.sampling import (Edit, Trajectory, ddim_invert, eps_and_h, load_model, mid_block_hook, sample,
                                     stored_noises)

__all__ = ["Edit", "Trajectory", "ddim_invert", "eps_and_h", "h_to_eps", "jacobian_directions", "load_model",
           "mean_difference", "mid_block_hook", "orthogonalize", "pca_per_timestep", "sample", "spread",
           "stored_noises", "svm_normal", "top_singular_vectors"]
