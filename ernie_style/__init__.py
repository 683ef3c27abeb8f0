"""RoFormer pretraining with whole-word masking and sentence-order prediction, in Paddle."""
