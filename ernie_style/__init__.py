"""RoFormer pretraining with whole-word masking and sentence-order prediction, in Paddle."""
import warnings

# Paddle warns on import that ccache is missing (it matters only to those who compile Paddle C++ extensions,
# which this package never does at run time); it was printed by every process of every run.
warnings.filterwarnings("ignore", message="No ccache found", category=UserWarning)
# fleet.init builds every hybrid group on every rank and warns on each rank for each group it is not in.
warnings.filterwarnings("ignore", message="Current global rank", category=UserWarning)
# The DataLoader (num_workers > 0) hands batches over as Paddle tensors; to_tensor on them copies, as intended.
warnings.filterwarnings("ignore", message="To copy construct from a tensor", category=UserWarning)
