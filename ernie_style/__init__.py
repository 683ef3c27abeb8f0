"""RoFormer pretraining with whole-word masking and sentence-order prediction, in Paddle."""
import warnings

# Paddle warns on import that ccache is missing (it matters only to those who compile Paddle C++ extensions,
# which this package never does at run time); it was printed by every process of every run.
warnings.filterwarnings("ignore", message="No ccache found", category=UserWarning)
