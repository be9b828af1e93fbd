"""PCA of a point cloud with the SVD, then image compression as in the blog post.

Part 1: a cloud of 500 points in the plane, stretched along one direction.
Centre it, take its SVD ``X_c = U S V^T``: the rows of ``V^T`` are the
principal axes and ``s_i^2 / (n - 1)`` the variance along each, exactly what
``sklearn.decomposition.PCA`` reports. ``TruncatedSVDCompressor`` at rank 1
on the centred cloud finds the first axis and projects the points on it.

Part 2: the photograph ``china.jpg`` (shipped with scikit-learn) as a
427 x 1920 matrix (the three colour channels side by side), kept at rank k:
the share of energy ``sum s_i^2`` and of ``sum s_i`` against rank, the
compression ratio (the raw image's bytes over those of the two factors, stored
in 8 bits), PSNR, and the reconstructions.

Run: ``python examples/01_pca_and_image_compression.py [--output DIR]``
(figures go to ``demo_output/examples`` by default).
"""

import argparse
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from sklearn.datasets import load_sample_image
from sklearn.decomposition import PCA

from sksvd import TruncatedSVDCompressor
from sksvd.image import compress_image, image_to_matrix, psnr, rank_profile
from sksvd.plotting import plot_rank_profile

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--output", default="demo_output/examples")
out = Path(parser.parse_args().output)
out.mkdir(parents=True, exist_ok=True)

# ----------------------------------------------------------------------------- 1. PCA
rng = np.random.default_rng(0)
latent = rng.normal(size=(500, 2)) * [3.0, 0.7]             # long and thin
angle = np.deg2rad(30)
rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
cloud = latent @ rotation.T + [5.0, 2.0]

centred = cloud - cloud.mean(axis=0)
U, s, Vt = np.linalg.svd(centred, full_matrices=False)
variance = s**2 / (len(cloud) - 1)
pca = PCA(n_components=2).fit(cloud)
print("principal variances, SVD:", np.round(variance, 4))
print("principal variances, PCA:", np.round(pca.explained_variance_, 4))
print("axes agree up to sign:   ", np.allclose(np.abs(Vt), np.abs(pca.components_)))

svd = TruncatedSVDCompressor(n_components=1, algorithm="full").fit(centred)
print("TruncatedSVDCompressor axes agree:",
      np.allclose(np.abs(svd.components_), np.abs(Vt[:1]), atol=1e-5))
print(f"the first axis alone keeps {svd.energy_ratio_[-1]:.1%} of the spread (energy)")

fig = Figure(figsize=(10, 4), layout="constrained")
ax, ax2 = fig.subplots(1, 2)
ax.scatter(*cloud.T, s=5, alpha=0.4)
mean = cloud.mean(axis=0)
for axis, sd, color in zip(Vt, np.sqrt(variance), ("tab:red", "tab:green"), strict=True):
    ax.annotate("", xy=mean + 2 * sd * axis, xytext=mean,
                arrowprops={"arrowstyle": "->", "color": color, "lw": 2.5})
ax.set_aspect("equal")
ax.set_title("point cloud and its principal axes (2 sd)")
line = svd.inverse_transform(svd.transform(centred)) + mean   # rank-1 approximation
ax2.scatter(*cloud.T, s=5, alpha=0.2, label="points")
ax2.scatter(*line.T, s=5, color="tab:red", label="rank-1 projection")
ax2.set_aspect("equal")
ax2.legend(loc="upper left", fontsize="small")
ax2.set_title("each point projected on the first axis")
fig.savefig(out / "pca_point_cloud.png", dpi=100)

# ----------------------------------------------------------------------------- 2. image
img = load_sample_image("china.jpg")                        # (427, 640, 3) uint8
M = image_to_matrix(img)                                    # (427, 1920)
print(f"\nchina.jpg as a {M.shape[0]} x {M.shape[1]} matrix")

# The blog's "80% of the variance at rank 130" is a share of sum s_i:
seed = compress_image(img, 0.8, criterion="singular_values")
print(f"80% of sum s_i: rank {seed.n_components}, compression ratio (raw / factors) "
      f"{seed.compression_ratio:.2f}, PSNR {psnr(img, seed.reconstruct()):.1f} dB")
energy = compress_image(img, 0.8)                           # criterion="energy"
print(f"80% of the energy sum s_i^2: rank {energy.n_components} (a poor guide to quality)")
target = compress_image(img, psnr=30.0)
print(f"PSNR >= 30 dB needs rank {target.n_components}")

profile = rank_profile(img, [1, 5, 10, 20, 50, 100, 130, 200, 300], ssim=False)
print(profile[["rank", "energy", "singular_value_share", "compression_ratio", "psnr",
               "jpeg_psnr"]].round(3).to_string(index=False))
plot_rank_profile(profile, title="china.jpg: quality and size against rank").savefig(
    out / "china_rank_profile.png", dpi=100)

ranks = (5, 20, 50, 130)
fig = Figure(figsize=(12, 2.6), layout="constrained")
axes = fig.subplots(1, len(ranks) + 1)
axes[0].imshow(img)
axes[0].set_title("original")
for ax, k in zip(axes[1:], ranks, strict=True):
    ci = compress_image(img, k)
    ax.imshow(ci.reconstruct())
    ax.set_title(f"rank {k}, raw / factors = {ci.compression_ratio:.1f}")
for ax in axes:
    ax.set_axis_off()
fig.savefig(out / "china_reconstructions.png", dpi=100)
print(f"figures in {out}/: pca_point_cloud.png, china_rank_profile.png, "
      "china_reconstructions.png")
