"""Pictures of what a transformer does (optional: needs matplotlib,
``pip install "transformer_c[plot]"``).

Every ``plot_*`` function takes plain NumPy arrays (attention probabilities (L, H, T, S),
embeddings, weight matrices, training logs) and returns a matplotlib Figure: nothing is
shown and no pyplot state is touched, so they work headless (``fig.savefig("x.png")``)
and display inline in notebooks. Without matplotlib they raise MatplotlibMissingError
(an ImportError) naming the extra; the computations behind them (attention_rollout,
head_specialisation, qk_spectra, effective_rank, embedding_pca, pe_dot_products,
singular_values_over_training, confusion_matrix, read_log) need only NumPy.

  positions   plot_positional_encoding, pe_dot_products, plot_pe_dot_vs_distance
  attention   plot_attention_maps, plot_cross_attention, attention_rollout,
              plot_attention_rollout
  heads       head_specialisation, plot_head_specialisation
  embeddings  embedding_pca, plot_embedding_pca
  spectra     singular_values_over_training, plot_singular_values, qk_spectra,
              plot_qk_spectra, effective_rank
  training    read_log, plot_training_curves, plot_loss_curve (to a PNG), plot_grad_norms
  confusion   confusion_matrix, plot_confusion_matrix
"""
from ._mpl import MatplotlibMissingError, have_matplotlib
from .attention import (attention_rollout, plot_attention_maps, plot_attention_rollout,
                        plot_cross_attention)
from .confusion import confusion_matrix, plot_confusion_matrix
from .embeddings import embedding_pca, plot_embedding_pca
from .heads import head_specialisation, plot_head_specialisation
from .positions import pe_dot_products, plot_pe_dot_vs_distance, plot_positional_encoding
from .spectra import (effective_rank, plot_qk_spectra, plot_singular_values, qk_spectra,
                      singular_values_over_training)
from .training import plot_grad_norms, plot_loss_curve, plot_training_curves, read_log

__all__ = ["have_matplotlib", "MatplotlibMissingError",
           "plot_positional_encoding", "pe_dot_products", "plot_pe_dot_vs_distance",
           "plot_attention_maps", "plot_cross_attention", "attention_rollout",
           "plot_attention_rollout", "head_specialisation", "plot_head_specialisation",
           "embedding_pca", "plot_embedding_pca", "singular_values_over_training",
           "plot_singular_values", "qk_spectra", "plot_qk_spectra", "effective_rank",
           "read_log", "plot_training_curves", "plot_loss_curve", "plot_grad_norms",
           "confusion_matrix", "plot_confusion_matrix"]
